"""The host (CPU, RAM, load) and the llama-server container's own CPU and memory."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from monitor.format import bar, gib, pct, ratio_pct, sparkline
from monitor.levels import LEVEL_STYLE, MEMORY_THRESHOLDS, UTIL_THRESHOLDS, usage_level
from monitor.view_state import HISTORY_SECONDS, ViewState

WIDE = 70  # from this width (no GPU: the panel spans the screen) the panel needs two rows, not four


class SystemPanel(Widget):
    DEFAULT_CSS = """
    SystemPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, model: ViewState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    def render(self) -> Text:
        sample = self.model.system
        if sample is None:
            return Text("waiting for the first sample…", "bright_black")
        width = self.size.width or 30
        return self._wide(sample, width) if width >= WIDE else self._tall(sample, max(12, width))

    def _tall(self, sample: dict[str, Any], width: int) -> Text:
        value_w = 14 if width >= 30 else 5  # narrow: the value, then the bar, then the rest cut
        bar_w = max(0, min(16, width - 6 - value_w - 1))
        text = Text()
        cpu = sample.get("cpu_pct")
        style = LEVEL_STYLE[usage_level(cpu, *UTIL_THRESHOLDS)]
        text.append("CPU   ")
        text.append(pct(cpu).ljust(value_w), style)
        text.append_text(bar(None if cpu is None else cpu / 100, bar_w, style))
        spark_w = width - 6 - value_w - bar_w - 2
        if spark_w > 4:
            text.append("  ")
            text.append(sparkline(self.model.cpu_history, spark_w, 100.0, HISTORY_SECONDS), style)

        used, total = sample.get("ram_used_mib"), sample.get("ram_total_mib")
        ram_pct = ratio_pct(used, total)
        style = LEVEL_STYLE[usage_level(ram_pct, *MEMORY_THRESHOLDS)]
        text.append("\nRAM   ")
        ram = f"{gib(used)}/{gib(total)} GiB"
        text.append(ram.ljust(value_w) if value_w >= len(ram) else ram + " ", style)
        text.append_text(bar(None if ram_pct is None else ram_pct / 100,
                             max(0, min(bar_w, width - 6 - max(value_w, len(ram) + 1))), style))
        text.append("\nload  ")
        self._load(text, sample, cores=width >= 34)
        text.append("\nserver", "bold")
        self._server(text, sample, short=width < 34)
        return text

    def _wide(self, sample: dict[str, Any], width: int) -> Text:
        text = Text()
        cpu = sample.get("cpu_pct")
        style = LEVEL_STYLE[usage_level(cpu, *UTIL_THRESHOLDS)]
        used, total = sample.get("ram_used_mib"), sample.get("ram_total_mib")
        ram = f"{gib(used)}/{gib(total)} GiB "
        text.append("CPU  ")
        text.append(pct(cpu), style)
        text.append(" ")
        text.append_text(bar(None if cpu is None else cpu / 100, 12, style))
        spark_w = min(24, width - len(text.plain) - 2 - 7 - len(ram) - 12)
        if spark_w >= 6:
            text.append("  ")
            text.append(sparkline(self.model.cpu_history, spark_w, 100.0, HISTORY_SECONDS), style)
        ram_pct = ratio_pct(used, total)
        ram_style = LEVEL_STYLE[usage_level(ram_pct, *MEMORY_THRESHOLDS)]
        text.append("   RAM ")
        text.append(ram, ram_style)
        text.append_text(bar(None if ram_pct is None else ram_pct / 100, 12, ram_style))
        text.append("\nload ")
        self._load(text, sample)
        text.append("   server", "bold")
        self._server(text, sample)
        return text

    def _load(self, text: Text, sample: dict[str, Any], cores: bool = True) -> None:
        loads = [sample.get(k) for k in ("load_1", "load_5", "load_15")]
        text.append(" ".join("n/a" if v is None else f"{v:.2f}" for v in loads))
        count = len(sample.get("per_cpu_pct") or [])
        if count and cores:
            text.append(f"  ({count} cores)", "bright_black")

    def _server(self, text: Text, sample: dict[str, Any], short: bool = False) -> None:
        container = sample.get("container")
        if not container:
            text.append("  none running" if short else "  no container running", "bright_black")
            return
        c_used, c_limit = container.get("mem_used_mib"), container.get("mem_limit_mib")
        if short:  # a narrow panel: its CPU and memory, no labels
            text.append(f" {pct(container.get('cpu_pct')).strip()} · {gib(c_used)} GiB")
            return
        text.append(f" CPU {pct(container.get('cpu_pct')).strip()}")
        text.append(f"  mem {gib(c_used)}/{gib(c_limit)} GiB")
