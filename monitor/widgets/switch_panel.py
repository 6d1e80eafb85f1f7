"""Switch progress (phase, estimated progress, elapsed) and, after a failure, why.

The failure view is bounded (the app's CSS gives it at most part of the room above
the log), and its lines are ordered by importance: what failed, whether the previous
model came back, the message and hint, then the log lines. What does not fit is cut
from the bottom, and the border that says `x closes` always shows.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widget import Widget

from llm_mcp.runtime.failure_lines import failure_lines
from monitor.format import bar, clip, duration, visible
from monitor.view_state import ViewState

FAILURE_LOG_LINES = 6
MAX_SHARE = 0.6  # of the room below the panels; the log keeps the rest (styles.py uses it)


def phase_label(phase: str | None) -> str:
    return (phase or "?").replace("_", " ")


class SwitchPanel(Widget):
    DEFAULT_CSS = """
    SwitchPanel { height: auto; padding: 0 1; }
    """

    def __init__(self, model: ViewState, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model

    @property
    def has_content(self) -> bool:
        return self.model.job is not None or self.model.failed_job() is not None

    def render(self) -> Text:
        if self.model.job is not None:
            return self._progress(self.model.job)
        failed = self.model.failed_job()
        if failed is not None:
            return self._failure(failed)
        return Text()

    def _progress(self, job: dict[str, Any]) -> Text:
        m = self.model
        kind = job.get("kind")
        name = visible(str(job.get("name") or m.profile_name(job.get("profile")) or ""))
        elapsed = m.job_elapsed()
        estimate = job.get("estimate")
        text = Text()
        if kind == "bench":
            return self._bench(job, text)
        stops = [visible(m.profile_name(str(i))) for i in job.get("stops") or []]
        if kind == "stop":
            text.append("■ stopping " + (", ".join(stops) if len(stops) > 1 else "the model"), "bold yellow")
        elif kind == "unload":
            text.append("■ stopping ", "bold yellow")
            text.append(name, "bold")
        elif kind == "adopt":
            text.append(f"⟳ adopting the running container ({name})", "bold yellow")
        else:
            text.append("⟳ switching to ", "bold yellow")
            text.append(str(name), "bold")
            if job.get("force"):
                text.append(" (replacing the previous switch)", "yellow")
            replaced = [visible(m.profile_name(str(i))) for i in job.get("stops") or []
                        if i != job.get("profile")]
            if replaced:  # the others keep serving
                text.append(f" (stops {', '.join(replaced)})", "yellow")
        text.append(f"  · {phase_label(job.get('phase'))}", "bold")
        text.append(f"  · {duration(elapsed)}")
        if isinstance(estimate, int | float) and estimate > 0:
            text.append(f" of ~{duration(float(estimate))}", "bright_black")
        width = max(20, self.size.width)
        if kind == "switch":
            text.append("\n")
            if isinstance(estimate, int | float) and estimate > 0:
                fraction = min(0.99, elapsed / float(estimate))
                text.append_text(bar(fraction, max(10, width - 6), "yellow"))
                text.append(f" {fraction * 100:3.0f}%")
            else:
                text.append("no estimate yet: this is the first load of this profile (elapsed time only)",
                            "bright_black")
        phases = job.get("phases") or []
        if len(phases) > 1:
            text.append("\n")
            text.append(" → ".join(f"{phase_label(p.get('phase'))} {duration(p.get('at'))}" for p in phases),
                        "bright_black")
        return text

    def _bench(self, job: dict[str, Any], text: Text) -> Text:
        """`llm-mcp bench` in flight: which profile (k of K), its step, run i/n, the results so far."""
        m = self.model
        raw = job.get("bench")
        info: dict[str, Any] = raw if isinstance(raw, dict) else {}
        order = [str(p) for p in info.get("order") or info.get("profiles") or []]
        index = info.get("index")
        name = visible(str(job.get("name") or job.get("profile") or ""))
        text.append("⏱ bench", "bold yellow")
        if len(order) > 1 and isinstance(index, int):
            text.append(f" {index + 1}/{len(order)}", "bold yellow")
        text.append(": ", "bold yellow")
        text.append(name, "bold")
        step = info.get("step") or job.get("phase")
        text.append(f"  · {phase_label(job.get('phase') if step == 'loading' else step)}", "bold")
        raw_settings = info.get("settings")
        settings: dict[str, Any] = raw_settings if isinstance(raw_settings, dict) else {}
        run, runs = info.get("run"), settings.get("repeat")
        counted = isinstance(run, int) and isinstance(runs, int) and runs > 0
        if step == "measuring" and counted:
            text.append(f"  · run {run}/{runs}" if run else "  · warm-up", "bold")
        text.append(f"  · {duration(m.job_elapsed())}")
        width = max(20, self.size.width)
        text.append("\n")
        if step == "measuring" and counted and run:
            fraction = min(1.0, (run - 1) / runs)
            text.append_text(bar(fraction, max(10, width - 6), "cyan"))
            text.append(f" {fraction * 100:3.0f}%")
        else:
            text.append(self._bench_plan(step, job.get("estimate"), settings), "bright_black")
        if order:
            raw_results = info.get("results")
            results: dict[str, Any] = raw_results if isinstance(raw_results, dict) else {}
            text.append("\n")
            for i, pid in enumerate(order):
                if i:
                    text.append(" → ", "bright_black")
                label = visible(m.profile_name(pid))
                done = results.get(pid)
                if isinstance(done, dict) and done.get("error"):
                    text.append(f"✗ {label}", "red")
                elif isinstance(done, dict):
                    gen = (done.get("gen_tps") or {}).get("median")
                    text.append(f"✓ {label}" + (f" {gen:.1f} t/s" if isinstance(gen, int | float) else ""),
                                "green")
                elif i == index:
                    text.append(f"⟳ {label}", "bold yellow")
                else:
                    text.append(label, "bright_black")
        return text

    @staticmethod
    def _bench_plan(step: Any, estimate: Any, settings: dict[str, Any]) -> str:
        """What the bench does next, in words (before the runs, between profiles, at the end)."""
        runs = settings.get("repeat")
        plan = (f"{runs} runs of {settings.get('prompt_tokens')} prompt + {settings.get('gen_tokens')} "
                "generated tokens") if isinstance(runs, int) else "the runs"
        if step == "restoring":
            return "measured; putting back the model that ran before the bench"
        if step == "measuring":
            return f"a warm-up completion, then {plan}"
        loads = (f" (its loads take ~{duration(float(estimate))})"
                 if isinstance(estimate, int | float) and estimate > 0 else "")
        return f"loading the profile{loads}, then a warm-up and {plan}"

    def _failure(self, job: dict[str, Any]) -> Text:
        m = self.model
        text = Text()
        text.append("✗ bench of " if job.get("kind") == "bench" else "✗ switch to ", "bold red")
        text.append(visible(str(job.get("name") or job.get("profile"))), "bold red")
        text.append(f" failed after {duration(job.get('elapsed'))}", "bold red")
        text.append(f" ({visible(str(job.get('reason') or 'unknown reason'))})", "red")
        previous = job.get("previous")
        restored = job.get("restored")
        text.append("\n")
        before = visible(m.profile_name(previous))
        if previous is None or previous == job.get("profile"):
            text.append("nothing was running before; nothing to restore", "bright_black")
        elif restored:
            text.append(f"✓ the previous model, {before}, was restored", "green")
        elif restored is False:
            text.append(f"✗ the previous model, {before}, could not be restored", "bold red")
        else:
            text.append(f"the previous model, {before}, was not restored (rollback off)", "yellow")
        if job.get("message"):
            text.append(f"\n{visible(str(job['message']))}")
        if job.get("hint"):
            text.append(f"\nhint: {visible(str(job['hint']))}", "italic")
        lines = failure_log_lines([str(line) for line in job.get("log_lines") or []])
        room = self._room()
        if room is not None:  # as many log lines as fit; none (and no heading) when none fits
            used = len(text.wrap(self.app.console, max(1, self.content_size.width)))
            lines = lines[:max(0, room - used - 1)] if room - used >= 2 else []
        if lines:
            width = max(20, self.size.width) - 2
            text.append("\nthe log lines that show it:", "bright_black")
            for line in lines:  # one row each: the log panel below has them in full
                text.append(f"\n  {clip(visible(line.expandtabs()), width)}", "bright_black")
        return text


    def _room(self) -> int | None:
        """Rows of content the panel may have (its CSS max-height, less the border)."""
        parent = self.parent
        if parent is None or not isinstance(parent, Widget) or not parent.size.height:
            return None
        return int(parent.size.height * MAX_SHARE) - 2


def failure_log_lines(lines: list[str]) -> list[str]:
    """The lines of a failed switch's log that say why first (as every front end shows them)."""
    return failure_lines(lines, FAILURE_LOG_LINES).ordered()
