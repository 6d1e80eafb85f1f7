"""Small text helpers for the panels: durations, sizes, bars, sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size
from rich.text import Text

# Textual passes ESC through to the terminal: text from the daemon or a container is
# drawn through the project's one escaping function (control characters shown as \x1b).
from llm_mcp.util import durations
from llm_mcp.util.terminal_text import visible

__all__ = ["bar", "clip", "duration", "gib", "pct", "placement", "ratio_pct", "requests_badge", "sparkline",
           "visible"]

SPARK = " ▁▂▃▄▅▆▇█"


def placement(engine: object, gpus: object, exclusive: object = False) -> str:
    """Where a model runs: `local · GPU 0,1`, `local · all GPUs`, `local · CPU` (+ `· excl`)."""
    gpu_text = str(gpus or "all")
    place = {"all": "all GPUs", "none": "CPU"}.get(gpu_text, f"GPU {gpu_text}")
    text = f"{engine or 'local'} · {place}"
    return text + " · excl" if exclusive else text


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells, with an ellipsis when something was cut."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1) + "…"


def duration(seconds: float | None) -> str:
    """The monitor's narrow form: 1.2s, 42s, 3m05s, 2h03m, 3d04h (llm_mcp.util.durations)."""
    return durations.duration(seconds, compact=True)


def requests_badge(in_flight: int, queued: int) -> str:
    """The endpoint's requests for a model: `⇅2`, `⇅2 +1q`, `⇅0 +3q` (waiting for its load); '' for none."""
    if not (in_flight or queued):
        return ""
    return f"⇅{in_flight}" + (f" +{queued}q" if queued else "")


def gib(mib: float | None) -> str:
    return "n/a" if mib is None else f"{mib / 1024:.1f}"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:3.0f}%"


def ratio_pct(used: float | None, total: float | None) -> float | None:
    if used is None or not total:
        return None
    return 100.0 * used / total


def bar(fraction: float | None, width: int, style: str, *, empty_style: str = "bright_black") -> Text:
    """A horizontal bar of `width` cells, in eighths."""
    text = Text()
    if width <= 0:
        return text
    if fraction is None:
        text.append("·" * width, empty_style)
        return text
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    text.append("█" * full, style)
    if full < width:
        partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
        if partial:
            text.append(partial, style)
        text.append("░" * (width - full - len(partial)), empty_style)
    return text


def sparkline(values: Sequence[float | None], width: int, top: float, span: int | None = None) -> str:
    """`values` (oldest first) as one row of bars scaled to `top`, newest on the right.

    With `span` samples wanted across `width` cells, each cell shows the highest of
    ceil(span / width) samples, so the line always covers the same stretch of time.
    """
    if width <= 0:
        return ""
    per_cell = max(1, -(-(span or width) // width))
    data = list(values)
    cells: list[str] = []
    end = len(data)
    while end > 0 and len(cells) < width:
        group = [v for v in data[max(0, end - per_cell):end] if v is not None]
        end -= per_cell
        if not group or top <= 0:
            cells.append(" ")
            continue
        value = max(group)
        level = round(min(1.0, max(0.0, value / top)) * (len(SPARK) - 1))
        if value > 0 and level == 0:
            level = 1
        cells.append(SPARK[level])
    cells.reverse()
    return " " * (width - len(cells)) + "".join(cells)
