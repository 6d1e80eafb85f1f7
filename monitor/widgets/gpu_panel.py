"""One block per GPU: utilisation, VRAM, temperature against its slowdown point, power."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from monitor.format import bar, clip, gib, pct, ratio_pct, sparkline, visible
from monitor.levels import LEVEL_STYLE, MEMORY_THRESHOLDS, UTIL_THRESHOLDS, temperature_level, usage_level
from monitor.view_state import HISTORY_SECONDS, GpuHistory, ViewState

LABEL = 6
VALUE = 16
COMPACT_BELOW_ROWS = 30  # a shorter terminal gets two rows per GPU instead of four (the log needs them)


def no_gpu_hint(reason: str) -> str:
    low = reason.lower()
    if "not found" in low or "library" in low:
        return ("install the NVIDIA driver (nvidia-smi must work for this user); "
                "models run on the CPU meanwhile")
    if "no gpus" in low:
        return "nvidia-smi should list the GPU; check the driver and that this user can see /dev/nvidia*"
    return "run `llm-mcp check` for a diagnosis"


class GpuPanel(Widget):
    DEFAULT_CSS = """
    GpuPanel { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, model: ViewState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self._shape: tuple[bool, int] | None = None

    def update_sample(self) -> None:
        """Redraw; lay out again only when the panel's height can change."""
        snapshot = self.model.gpu or {}
        shape = (bool(snapshot.get("available")), len(snapshot.get("gpus") or []) * (3 - self.compact))
        self.refresh(layout=shape != self._shape)
        self._shape = shape

    @property
    def compact(self) -> bool:
        return self.is_attached and 0 < self.app.size.height < COMPACT_BELOW_ROWS

    def render(self) -> Text:
        snapshot = self.model.gpu
        if snapshot is None:
            return Text("waiting for the first GPU sample…", "bright_black")
        if not snapshot.get("available") or not snapshot.get("gpus"):
            return self._no_gpu(visible(str(snapshot.get("reason") or "no GPU visible")))
        width = max(40, self.size.width)
        compact = self.compact
        lines = Text()
        for i, gpu in enumerate(snapshot["gpus"]):
            if i:
                lines.append("\n")
            history = self.model.gpu_history.get(int(gpu.get("index", 0)), GpuHistory())
            lines.append_text(self._small_card(gpu, width) if compact else self._card(gpu, history, width))
        return lines

    def _small_card(self, gpu: dict[str, Any], width: int) -> Text:
        """Two rows: the GPU, its temperature and power and our share; then utilisation and VRAM."""
        text = Text()
        text.append(f"GPU {gpu.get('index', '?')} ", "bold")
        text.append(visible(str(gpu.get("name") or "unknown GPU").removeprefix("NVIDIA ")))
        temp, slowdown = gpu.get("temperature_c"), gpu.get("slowdown_temp_c")
        level = temperature_level(temp, slowdown)
        text.append("  ")
        text.append("n/a" if temp is None else f"{temp}°C", LEVEL_STYLE[level] if level != "ok" else "")
        power, limit = gpu.get("power_w"), gpu.get("power_limit_w")
        if power is not None:
            text.append(f"  {power:.0f}" + (f"/{limit:.0f} W" if limit else " W"))
        text.append_text(self._processes(gpu))
        util = gpu.get("utilization_pct")
        used, total = gpu.get("memory_used_mib"), gpu.get("memory_total_mib")
        mem_pct = ratio_pct(used, total)
        memory = f"{gib(used)}/{gib(total)} GiB"
        bar_w = max(3, (width - 5 - 5 - 7 - len(memory) - 3) // 2)
        style = LEVEL_STYLE[usage_level(util, *UTIL_THRESHOLDS)]
        text.append("\nutil ")
        text.append(pct(util).ljust(5), style)
        text.append_text(bar(None if util is None else util / 100, bar_w, style))
        style = LEVEL_STYLE[usage_level(mem_pct, *MEMORY_THRESHOLDS)]
        text.append("  VRAM ")
        text.append(memory + " ", style)
        text.append_text(bar(None if mem_pct is None else mem_pct / 100, bar_w, style))
        return text

    def _title(self, gpu: dict[str, Any]) -> Text:
        text = Text(no_wrap=True, overflow="crop")
        text.append(f"GPU {gpu.get('index', '?')} ", "bold")
        text.append(visible(str(gpu.get("name") or "unknown GPU")))
        text.append_text(self._processes(gpu))
        return text

    def _processes(self, gpu: dict[str, Any]) -> Text:
        text = Text()
        ours = sum(p.get("used_mib") or 0 for p in gpu.get("processes") or [] if p.get("ours"))
        if ours:
            text.append(f"  llama-server {gib(ours)} GiB", "cyan")
        others = [p for p in gpu.get("processes") or [] if not p.get("ours")]
        if others:
            text.append(f"  +{len(others)} other process{'es' if len(others) > 1 else ''}", "bright_black")
        return text

    def _no_gpu(self, reason: str) -> Text:
        """One row when the reason and the hint fit side by side, two when not; never more."""
        head, hint = "No visible GPUs: ", f"hint: {no_gpu_hint(reason)}"
        width = self.size.width or 80
        text = Text()
        text.append(head, "bold yellow")
        one_row = len(head) + len(reason) + 3 + len(hint) <= width
        text.append(reason if one_row else clip(reason, width - len(head)))
        text.append(" · " if one_row else "\n", "bright_black")
        text.append(hint if one_row else clip(hint, width), "italic bright_black")
        return text

    def _card(self, gpu: dict[str, Any], history: GpuHistory, width: int) -> Text:
        bar_w = max(6, min(24, (width - LABEL - VALUE) // 3))
        spark_w = max(0, width - LABEL - VALUE - bar_w - 2)
        text = self._title(gpu)

        util = gpu.get("utilization_pct")
        style = LEVEL_STYLE[usage_level(util, *UTIL_THRESHOLDS)]
        text.append("\nutil".ljust(LABEL + 1))
        text.append(pct(util).ljust(VALUE), style)
        text.append_text(bar(None if util is None else util / 100, bar_w, style))
        text.append("  ")
        text.append(sparkline(history.util, spark_w, 100.0, HISTORY_SECONDS), style)

        used, total = gpu.get("memory_used_mib"), gpu.get("memory_total_mib")
        mem_pct = ratio_pct(used, total)
        style = LEVEL_STYLE[usage_level(mem_pct, *MEMORY_THRESHOLDS)]
        text.append("\nVRAM".ljust(LABEL + 1))
        text.append(f"{gib(used)}/{gib(total)} GiB".ljust(VALUE), style)
        text.append_text(bar(None if mem_pct is None else mem_pct / 100, bar_w, style))
        text.append("  ")
        text.append(sparkline(history.memory, spark_w, float(total or 0), HISTORY_SECONDS), style)

        temp, slowdown = gpu.get("temperature_c"), gpu.get("slowdown_temp_c")
        text.append("\ntemp".ljust(LABEL + 1))
        level = temperature_level(temp, slowdown)
        text.append("n/a" if temp is None else f"{temp}°C", LEVEL_STYLE[level] if level != "ok" else "")
        if slowdown is not None:
            text.append(f" (slows at {slowdown}°C)", "bright_black")
        power, limit = gpu.get("power_w"), gpu.get("power_limit_w")
        if power is not None:
            power_pct = ratio_pct(power, limit)
            text.append("   power ")
            text.append(f"{power:.0f}", "yellow" if power_pct is not None and power_pct >= 95 else "")
            text.append(f"/{limit:.0f} W" if limit else " W")
        if gpu.get("fan_pct") is not None:
            text.append(f"   fan {gpu['fan_pct']}%")
        return text
