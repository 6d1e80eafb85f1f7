"""The host (CPU, RAM, load) and the llama-server container's own CPU and memory."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from monitor.format import bar, gib, pct, ratio_pct, sparkline
from monitor.levels import LEVEL_STYLE, MEMORY_THRESHOLDS, UTIL_THRESHOLDS, usage_level
from monitor.model import HISTORY_SECONDS, Model


class SystemPanel(Widget):
    DEFAULT_CSS = """
    SystemPanel { height: auto; }
    """

    def __init__(self, model: Model, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    def render(self) -> Text:
        sample = self.model.system
        if sample is None:
            return Text("waiting for the first sample…", "bright_black")
        width = max(30, self.size.width)
        bar_w = max(6, min(16, width - 22))
        text = Text(no_wrap=True, overflow="crop")
        cpu = sample.get("cpu_pct")
        style = LEVEL_STYLE[usage_level(cpu, *UTIL_THRESHOLDS)]
        text.append("CPU   ")
        text.append(pct(cpu).ljust(14), style)
        text.append_text(bar(None if cpu is None else cpu / 100, bar_w, style))
        cores = len(sample.get("per_cpu_pct") or [])
        spark_w = width - 20 - bar_w - 2
        if spark_w > 4:
            text.append("  ")
            text.append(sparkline(self.model.cpu_history, spark_w, 100.0, HISTORY_SECONDS), style)

        used, total = sample.get("ram_used_mib"), sample.get("ram_total_mib")
        ram_pct = ratio_pct(used, total)
        style = LEVEL_STYLE[usage_level(ram_pct, *MEMORY_THRESHOLDS)]
        text.append("\nRAM   ")
        text.append(f"{gib(used)}/{gib(total)} GiB".ljust(14), style)
        text.append_text(bar(None if ram_pct is None else ram_pct / 100, bar_w, style))

        loads = [sample.get(k) for k in ("load_1", "load_5", "load_15")]
        text.append("\nload  ")
        text.append(" ".join("n/a" if v is None else f"{v:.2f}" for v in loads))
        if cores:
            text.append(f"  ({cores} cores)", "bright_black")

        container = sample.get("container")
        text.append("\nserver", "bold")
        if not container:
            text.append("  no container running", "bright_black")
        else:
            text.append(f" CPU {pct(container.get('cpu_pct')).strip()}")
            c_used, c_limit = container.get("mem_used_mib"), container.get("mem_limit_mib")
            text.append(f"  mem {gib(c_used)}/{gib(c_limit)} GiB")
        return text
