"""The llm-monitor app: a dashboard fed by the daemon's events, and two actions (switch, stop).

Everything it knows comes over the socket through the client it is given;
`make_app(client_factory)` is the seam tests use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Footer, Input

from llm_mcp.clients.client import DaemonUnavailable
from llm_mcp.protocol import BUSY, TOPICS, ProtocolError
from monitor.connection import ClientFactory, MonitorClient
from monitor.format import duration, visible
from monitor.profile_facts import device_line, fit_sentence, parse_fit
from monitor.screens import CompareScreen, ConfirmScreen, HelpScreen, Pick, PickerScreen, StopPickerScreen
from monitor.screens.stop_picker import ALL
from monitor.styles import APP_CSS
from monitor.view_state import ViewState
from monitor.widgets import GpuPanel, LogView, ModelRows, StatusBar, SwitchPanel, SystemPanel
from monitor.widgets.switch_panel import phase_label

LOG_FLUSH_S = 0.1  # log lines are written in batches at most this often
LOG_FLUSH_BUSY_S = 0.25  # ... and less often while lines pour in (nobody reads 1,000 lines a second)
BUSY_BATCH = 50
BACKFILL_LINES = 1000
EVENT_CAPACITY = 10000
RETRY_S = (0.5, 1.0, 2.0, 4.0)
POLL_S = 1.0  # status while the endpoint serves: its request counts change without an event
DASHBOARD_ACTIONS = frozenset({"pick", "compare", "stop", "filter", "jump", "follow", "top", "bottom", "wrap",
                               "timestamps", "dismiss_failure", "escape", "help", "log_source"})


class MonitorApp(App[None]):
    CSS = APP_CSS
    TITLE = "llm-monitor"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("m", "pick", "models"),
        Binding("c", "compare", "compare"),
        Binding("s", "stop", "stop"),
        Binding("slash", "filter", "filter"),
        Binding("n", "jump(True)", "next match", show=False),
        Binding("N", "jump(False)", "previous match", show=False),
        Binding("f,end", "follow", "follow"),
        Binding("g", "top", "top", show=False),
        Binding("G", "bottom", "bottom", show=False),
        Binding("w", "wrap", "wrap"),
        Binding("l", "log_source", "log"),  # in the footer only when there is a choice
        Binding("t", "timestamps", "timestamps", show=False),
        Binding("x", "dismiss_failure", "close panel", show=False),
        Binding("escape", "escape", "clear filter", show=False),
        Binding("question_mark,f1", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, client_factory: ClientFactory, *, readonly: bool = False,
                 clock: Callable[[], float] = time.time, max_log_lines: int = 5000) -> None:
        super().__init__()
        self.client_factory = client_factory
        self.readonly = readonly
        self.model = ViewState(clock=clock, readonly=readonly)
        self.client: MonitorClient | None = None
        self._pending_logs: list[dict[str, Any]] = []
        self._catching_up = False
        self._flush_timer: Timer | None = None
        self._flush_delay = LOG_FLUSH_S
        self._ticker: Timer | None = None
        self._poller: Timer | None = None
        self._last_seq = 0
        self._daemon_id: tuple[Any, Any] | None = None
        self._dropped = 0
        self._status_pending = False
        self._catch_up_running = False
        self._replacing: tuple[ConfirmScreen, str, str] | None = None  # an open "replace?" question
        # The dashboard's widgets, kept by reference: while an overlay is open the
        # app's queries search the overlay, but the dashboard keeps updating.
        self.status_bar = StatusBar(self.model, id="status")
        self.model_rows = ModelRows(self.model, id="models")
        self.gpu_panel = GpuPanel(self.model, id="gpu")
        self.system_panel = SystemPanel(self.model, id="system")
        self.switch_panel = SwitchPanel(self.model, id="switch")
        self.panels = Horizontal(id="panels")
        self.log_view = LogView(max_log_lines, id="log")
        self.filter_box = Input(placeholder="filter the log: text or regex · Enter keeps it · Esc clears it",
                                id="filter", compact=True)

    # ---- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.status_bar
        yield self.model_rows
        with self.panels:
            yield self.gpu_panel
            yield self.system_panel
        with Vertical(id="log-box"):  # the switch panel shares the log's room, never all of it
            yield self.switch_panel
            yield self.log_view
            yield self.filter_box
        yield Footer()

    def on_mount(self) -> None:
        self.gpu_panel.border_title = "GPU"
        self.system_panel.border_title = "system"
        self.log_view.border_title = "log"
        self.log_view.focus()
        self._render_all()
        self._ticker = self.set_interval(1.0, self._tick, pause=True)
        self._poller = self.set_interval(POLL_S, self._want_status, pause=True)
        self.run_worker(self._feed(), name="feed", group="feed", exit_on_error=False)

    def on_resize(self) -> None:
        self.gpu_panel.update_sample()  # a short terminal gets the compact GPU cards

    @property
    def catching_up(self) -> bool:
        """True while log lines are held back until the tail after subscribing is merged."""
        return self._catching_up

    def _render_all(self) -> None:
        self.status_bar.refresh()
        self._render_rows()
        self._render_gpu()
        self.system_panel.refresh(layout=True)
        self._render_switch()

    def _render_rows(self) -> None:
        rows = self.model_rows
        rows.display = rows.has_content
        rows.refresh(layout=True)
        self.refresh_bindings()
        if self._poller is not None:
            if self.model.wants_polling:
                self._poller.resume()
            else:
                self._poller.pause()

    def _render_gpu(self) -> None:
        """Without a GPU the panel shrinks to a line or two and the system panel takes the width."""
        snapshot = self.model.gpu
        no_gpu = snapshot is not None and not (snapshot.get("available") and snapshot.get("gpus"))
        panels = self.panels
        if panels.has_class("no-gpu") != no_gpu:
            panels.set_class(no_gpu, "no-gpu")
            self.system_panel.refresh(layout=True)
        self.gpu_panel.update_sample()

    def _render_switch(self) -> None:
        panel = self.switch_panel
        panel.display = panel.has_content
        failed = self.model.job is None and self.model.failed_job() is not None
        panel.set_class(failed, "failed")
        stopping = (self.model.job or {}).get("kind") in ("stop", "unload")
        panel.border_title = "switch failed" if failed else "stop" if stopping else "switch"
        panel.border_subtitle = "x closes" if failed else ""
        panel.refresh(layout=True)
        self.status_bar.refresh()  # its hint hides while the failure panel shows it
        if self._ticker is not None:
            if self.model.job is not None:
                self._ticker.resume()
            else:
                self._ticker.pause()
        self._refresh_picker()

    def _refresh_picker(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, PickerScreen | CompareScreen):
                screen.refresh_view()

    def _tick(self) -> None:
        self._render_switch()

    # ---- the connection ----------------------------------------------------------

    async def _feed(self) -> None:
        attempt = 0
        async with self.client_factory() as client:
            self.client = client
            while True:
                try:
                    await self._connect(client)
                    attempt = 0
                    first = True
                    async for event in client.events(list(TOPICS), capacity=EVENT_CAPACITY):
                        if first:
                            first = False
                            self._start_catch_up()
                        self._on_event(event)
                    note = "the daemon closed the connection"
                except DaemonUnavailable as exc:
                    note = (str(exc).splitlines() or [""])[0]
                except ProtocolError as exc:
                    note = f"{exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
                except (ConnectionError, OSError) as exc:
                    note = str(exc) or type(exc).__name__
                except Exception as exc:  # the monitor must outlive anything the daemon says
                    note = f"unexpected error: {exc!r}"
                    self.log_view.note(f"llm-monitor: {visible(note)}; reconnecting")
                self._disconnected(note)
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                attempt += 1

    async def _connect(self, client: MonitorClient) -> None:
        status = await client.call("status")
        try:
            models = (await client.call("list_models")).get("models", [])
        except ProtocolError as exc:  # a broken models.conf: show it, keep monitoring
            models = []
            self.notify(visible(exc.message), title="models.conf", severity="error", timeout=10)
        hello = dict(client.hello or {})
        identity = (hello.get("pid"), hello.get("started_at"))
        log = self.log_view
        if self._daemon_id is not None and identity != self._daemon_id:
            log.clear()
            self._last_seq = 0
            log.note(f"--- the daemon restarted (pid {hello.get('pid')}); its log follows ---", "separator")
        self._daemon_id = identity
        self._dropped = 0
        self._pending_logs.clear()
        tail = await client.call("tail_logs", lines=BACKFILL_LINES)
        self._write_lines(tail.get("lines", []))
        self._catching_up = True  # hold event lines until the tail after subscribing merges them
        self.set_timer(1.5, self._catch_up_fallback)
        self.model.daemon = hello
        self.model.models = list(models)
        self.model.apply_status(status)
        was_down = self.model.ever_connected and not self.model.connected
        self.model.connected = True
        self.model.ever_connected = True
        self.model.connection_note = ""
        if was_down:
            self.notify("reconnected to the daemon", timeout=3)
        self._render_all()

    def _disconnected(self, note: str) -> None:
        self._catching_up = False
        self._pending_logs.clear()
        self.model.connected = False
        self.model.connection_note = note
        self.model.job = None
        self._render_all()

    def _start_catch_up(self) -> None:
        self._catching_up = True
        self._catch_up_running = True
        self.run_worker(self._catch_up(), group="catch-up", exit_on_error=False)

    def _catch_up_fallback(self) -> None:
        """No event came after subscribing (a quiet daemon): merge anyway."""
        if self._catching_up and not self._catch_up_running and self.model.connected:
            self._start_catch_up()

    async def _catch_up(self) -> None:
        """Merge what the daemon logged around the moment we subscribed, without gaps or doubles."""
        lines: list[dict[str, Any]] = []
        status: dict[str, Any] | None = None
        if self.client is not None:
            try:  # what changed between the first `status` and the subscription, too
                status = await self.client.call("status", gpu=False)
                lines = (await self.client.call("tail_logs", lines=BACKFILL_LINES)).get("lines", [])
            except Exception:  # the connection dropped: the reconnect will backfill
                lines = []
        if status is not None and self.model.connected:
            self.model.apply_status(status)
            self._render_all()
        merged = {int(line.get("seq") or 0): line for line in [*lines, *self._pending_logs]}
        self._pending_logs.clear()
        self._catching_up = self._catch_up_running = False
        self._write_lines([merged[seq] for seq in sorted(merged)])

    def _on_event(self, event: dict[str, Any]) -> None:
        topic = event.get("topic")
        data = event.get("data") or {}
        dropped = int(event.get("dropped") or 0)
        if topic == "log":
            self._pending_logs.append(data)
        if dropped > self._dropped:  # the daemon's queue for us overflowed: fetch what was lost
            self._dropped = dropped
            if not self._catching_up:
                self._start_catch_up()
        if topic == "log":
            if not self._catching_up and self._flush_timer is None:
                self._flush_timer = self.set_timer(self._flush_delay, self.flush_logs)
        elif topic == "gpu":
            self.model.apply_gpu(data)
            self._render_gpu()
        elif topic == "system":
            self.model.apply_system(data)
            self.system_panel.refresh()
            self.status_bar.refresh()
        elif topic == "state":
            self.model.apply_state(data)
            self.status_bar.refresh(layout=True)
            self._render_rows()
            self._want_status()
        elif topic == "job":
            finished = self.model.apply_job(data)
            if finished:
                self._job_finished(data)
                self._want_status()
            # A failure panel waits for the status after it, so it never shows beside a header that
            # still names the failed target (after a rollback the restored model is the primary).
            if not (finished and self.model.failed_job() is not None):
                self._render_switch()

    def flush_logs(self) -> None:
        self._flush_timer = None
        if not self._catching_up and self._pending_logs:
            lines, self._pending_logs = self._pending_logs, []
            self._flush_delay = LOG_FLUSH_BUSY_S if len(lines) > BUSY_BATCH else LOG_FLUSH_S
            self._write_lines(lines)

    def _write_lines(self, lines: list[dict[str, Any]]) -> None:
        batch: list[tuple[int, float, str, str, str | None]] = []
        last = self._last_seq
        for line in lines:
            seq = int(line.get("seq") or 0)
            if seq <= last:
                continue
            last = seq
            model = line.get("model")
            batch.append((seq, float(line.get("time") or 0.0), str(line.get("kind") or "log"),
                          str(line.get("text") or ""), None if model is None else str(model)))
        self._last_seq = last
        if batch:
            known = len(self.log_view.models)
            self.log_view.add(batch)
            if len(self.log_view.models) != known:
                self.refresh_bindings()

    def _want_status(self) -> None:
        if not self._status_pending:
            self._status_pending = True
            self.run_worker(self._refresh_status(), group="status", exit_on_error=False)

    async def _refresh_status(self) -> None:
        await asyncio.sleep(0.05)  # one status call for a burst of state events
        self._status_pending = False
        if self.client is None or not self.model.connected:
            self._render_switch()
            return
        try:
            status = await self.client.call("status", gpu=False)
        except Exception:  # the feed notices a lost connection and says so
            self._render_switch()
            return
        self.model.apply_status(status)
        self._render_all()

    def _job_finished(self, job: dict[str, Any]) -> None:
        name = visible(str(job.get("name") or job.get("profile") or ""))
        result = job.get("result")
        if self._replacing is not None and self._replacing[1] == job.get("id"):
            screen, _, target = self._replacing
            self._replacing = None
            if screen.is_attached:
                over = f"The {job.get('kind') or 'switch'} to {name} is over ({visible(str(result))})."
                screen.reword(f"{over} Switch to {visible(self.model.profile_name(target))} now?", "switch")
        if job.get("kind") == "stop":
            if result == "stopped":
                self.notify("model stopped", timeout=4)
        elif job.get("kind") == "unload":
            if result == "stopped":
                self.notify(f"{name} stopped", timeout=4)
            elif result == "failed":
                self.notify(f"stopping {name} failed: {visible(str(job.get('reason')))}", severity="error",
                            timeout=6)
        elif result == "ready" and job.get("kind") == "switch":
            self.notify(f"{name} is ready ({duration(job.get('elapsed'))})", timeout=4)
        elif job.get("kind") == "bench":
            self.run_worker(self._refresh_models(), group="models", exit_on_error=False)  # the new numbers
            if result in ("done", "failed"):
                self.notify(f"bench {result}: {visible(str(job.get('detail') or ''))}",
                            severity="error" if result == "failed" else "information", timeout=6)
        elif result == "failed":
            self.notify(f"switch to {name} failed: {visible(str(job.get('reason')))}", severity="error",
                        timeout=6)
        elif result == "cancelled" and job.get("replaced_by"):
            self.notify(f"switch to {name} was replaced", timeout=4)

    # ---- actions -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DASHBOARD_ACTIONS and len(self.screen_stack) > 1:
            return False  # an overlay is open: its own keys only (each overlay binds q to quit)
        if action == "stop" and self.readonly:
            return None
        # one model or none: nothing to choose between (hidden from the footer)
        return action != "log_source" or len(self.log_sources()) > 2 or self.log_view.source is not None

    def _usable(self) -> MonitorClient | None:
        if self.client is None or not self.model.connected:
            self.notify("not connected to the daemon (reconnecting…)", severity="warning", timeout=3)
            return None
        return self.client

    def action_pick(self) -> None:
        if not self.model.connected:
            self.notify("not connected to the daemon (reconnecting…)", severity="warning", timeout=3)
            return
        self.push_screen(PickerScreen(self.model, readonly=self.readonly), self._picked)
        self.run_worker(self._refresh_models(), group="models", exit_on_error=False)

    def action_compare(self) -> None:
        """The bench results side by side (what the last list_models said; refreshed now)."""
        self.push_screen(CompareScreen(self.model))
        if self.model.connected:
            self.run_worker(self._refresh_models(), group="models", exit_on_error=False)

    async def _refresh_models(self) -> None:
        if self.client is None:
            return
        try:
            self.model.models = list((await self.client.call("list_models")).get("models", []))
        except ProtocolError as exc:  # models.conf broke since: say so where the user looks
            for screen in self.screen_stack:
                if isinstance(screen, PickerScreen):
                    screen.message = f"models.conf: {visible(exc.message)} (the list shown is older)"
            self._refresh_picker()
            return
        except Exception:
            return
        self._refresh_picker()

    def _picked(self, pick: Pick | None) -> None:
        if pick is not None:
            self.run_worker(self._switch(pick), group="action", exit_on_error=False)

    async def _switch(self, pick: Pick) -> None:
        client = self._usable()
        if client is None:
            return
        try:
            job = await client.call("switch", model=pick.profile, force=pick.force, wait=False)
        except ProtocolError as exc:
            if exc.reason == "wont_fit" and not pick.force:
                self._offer_force(pick, exc)
                return
            if exc.code == BUSY and isinstance(exc.data.get("job"), dict):
                running = exc.data["job"]  # the daemon's word on what runs, name included
                question = (f"A {running.get('kind') or 'switch'} to "
                            f"{visible(str(running.get('name') or running.get('profile')))} is in flight "
                            f"({visible(phase_label(running.get('phase')))}). Replace it with "
                            f"{visible(self.model.profile_name(pick.profile))}?")
                screen = ConfirmScreen(question, "r", "replace")
                self._replacing = (screen, str(running.get("id")), pick.profile)
                # Forced only if that job still runs when the user answers (it may end meanwhile).
                self.push_screen(screen, lambda yes: self._picked(
                    Pick(pick.profile, str(running.get("id")) not in self.model.finished) if yes else None))
                return
            self.notify(visible(exc.message) + (f"\nhint: {visible(exc.hint)}" if exc.hint else ""),
                        title="switch refused", severity="error", timeout=8)
            return
        except (DaemonUnavailable, ConnectionError, OSError) as exc:
            self.notify(visible(str(exc)), title="switch", severity="error", timeout=6)
            return
        if job.get("done") and job.get("result") == "ready":
            self.notify(f"{visible(str(job.get('name')))} is already loaded", timeout=3)
            return
        self.model.apply_job(job)
        self._render_switch()

    def _offer_force(self, pick: Pick, exc: ProtocolError) -> None:
        """The daemon refused a profile that does not fit, before stopping anything: say why, offer force."""
        raw = exc.data.get("fit")
        fit = parse_fit(raw if isinstance(raw, dict) else exc.data)  # the numbers, nested or not
        name = visible(self.model.profile_name(pick.profile))
        why = fit_sentence(fit) if fit is not None else exc.message
        if not why.startswith("does not fit"):
            why = f"does not fit: {why}"
        lines = [f"{name} {visible(why)}"]
        if fit is not None:
            lines += [f"  {visible(device_line(d))}" for d in fit.devices]
        if exc.hint:
            lines.append(f"hint: {visible(exc.hint)}")
        serving = [visible(self.model.profile_name(i)) for i in self.model.serving_ids()]
        if serving:
            lines.append(f"Nothing was stopped: {', '.join(serving)} "
                         f"{'keeps' if len(serving) == 1 else 'keep'} running.")
        lines.append(f"Load {name} anyway? It may run out of memory part-way through loading"
                     + self._after_stopping(pick.profile, serving))
        self.push_screen(ConfirmScreen("\n".join(lines), "f", "force", danger=True),
                         lambda yes: self._picked(Pick(pick.profile, True) if yes else None))

    def _after_stopping(self, target: str, serving: list[str]) -> str:
        """How the force question ends: which running models the load stops first, if any."""
        if not serving:
            return "."
        entry = next((m for m in self.model.models if m.get("id") == target), None)
        if entry is None or "would_replace" not in entry:  # a one-model daemon stops the one it runs
            return ", after the running model has been stopped."
        replaced = [visible(self.model.profile_name(str(i))) for i in entry.get("would_replace") or []]
        if not replaced:
            return ", beside the running models."
        return f", after {', '.join(replaced)} {'has' if len(replaced) == 1 else 'have'} been stopped."

    def action_stop(self) -> None:
        if self.readonly:
            self.notify("read-only monitor: actions are disabled", timeout=3)
            return
        if self._usable() is None:
            return
        serving = [row for row in self.model.running if row.state not in ("failed", "stopped")]
        if self.model.several and len(serving) > 1:  # which one? (or all)
            self.push_screen(StopPickerScreen(serving, self.model.primary_id), self._stop_picked)
            return
        if self.model.several and serving:
            self._ask_unload(serving[0].id)
            return
        job = self.model.job
        profile = self.model.profile
        if job is None and (self.model.state == "stopped" or profile is None):
            self.notify("nothing is running", timeout=3)
            return
        self._ask_stop_all()

    def _stop_picked(self, answer: str | None) -> None:
        if answer == ALL:
            self._ask_stop_all()
        elif answer is not None:
            self._ask_unload(answer)

    def _ask_stop_all(self) -> None:
        job = self.model.job
        names = [visible(row.name or row.id) for row in self.model.running
                 if row.state not in ("failed", "stopped")]
        if len(names) > 1:
            question = f"Stop every model ({', '.join(names)})? Their containers are removed."
        else:
            name = names[0] if names else visible(str((self.model.profile or {}).get("name") or "the model"))
            question = f"Stop {name}? Its container is removed and the model leaves memory."
        if job is not None:
            running = visible(str(job.get("name") or ""))
            question += f"\nThe {job.get('kind')} in flight ({running}) is cancelled."
        self.push_screen(ConfirmScreen(question, "y", "stop"),
                         lambda yes: self._confirmed_stop(bool(yes), job is not None))

    def _ask_unload(self, model_id: str) -> None:
        """Stop one model (socket method `unload`); the others keep serving."""
        row = next((r for r in self.model.running if r.id == model_id), None)
        name = visible(row.name or row.id) if row is not None else visible(model_id)
        others = [visible(r.name or r.id) for r in self.model.running
                  if r.id != model_id and r.state not in ("failed", "stopped")]
        question = f"Stop {name}? Its container is removed and the model leaves memory."
        if others:
            question += f"\n{', '.join(others)} {'keeps' if len(others) == 1 else 'keep'} serving."
        job = row.job if row is not None else None
        if job is not None and not job.done:
            question += f"\nThe {job.kind} in flight ({visible(job.name or model_id)}) is cancelled."
        force = job is not None and not job.done
        self.push_screen(ConfirmScreen(question, "y", "stop"),
                         lambda yes: self._confirmed_unload(bool(yes), model_id, force))

    def _confirmed_unload(self, yes: bool, model_id: str, force: bool) -> None:
        if yes:
            self.run_worker(self._stop(force, model_id), group="action", exit_on_error=False)

    def _confirmed_stop(self, yes: bool, force: bool) -> None:
        if yes:
            self.run_worker(self._stop(force), group="action", exit_on_error=False)

    async def _stop(self, force: bool, model_id: str | None = None) -> None:
        """Every model (`stop`), or one (`unload`)."""
        client = self._usable()
        if client is None:
            return
        try:
            if model_id is None:
                job = await client.call("stop", force=force, wait=False)
            else:
                job = await client.call("unload", model=model_id, force=force, wait=False)
        except ProtocolError as exc:
            self.notify(visible(exc.message), title="stop refused", severity="error", timeout=8)
            return
        except (DaemonUnavailable, ConnectionError, OSError) as exc:
            self.notify(visible(str(exc)), title="stop", severity="error", timeout=6)
            return
        self.model.apply_job(job)
        self._render_switch()

    def action_filter(self) -> None:
        box = self.filter_box
        box.value = self.log_view.filter_text
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.log_view.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.log_view.focus()

    def action_escape(self) -> None:
        box = self.filter_box
        if box.display or self.log_view.pattern is not None:
            box.value = ""
            box.display = False
            self.log_view.set_filter("")
            self.log_view.focus()

    def action_jump(self, forward: bool) -> None:
        if self.log_view.pattern is None:
            self.notify("no filter: press / first", timeout=2)
        elif not self.log_view.jump(forward):
            self.bell()

    def action_follow(self) -> None:
        self.log_view.resume()

    def action_top(self) -> None:
        self.log_view.action_top()

    def action_bottom(self) -> None:
        self.log_view.resume()

    def action_wrap(self) -> None:
        self.log_view.toggle_wrap()

    def log_sources(self) -> list[str | None]:
        """What `l` cycles through: all, then each running model, then any other the log names."""
        ids = dict.fromkeys([*self.model.running_ids(), *self.log_view.models])
        return [None, *ids]

    def action_log_source(self) -> None:
        sources = self.log_sources()
        current = self.log_view.source
        following = sources.index(current) + 1 if current in sources else 0
        self.log_view.set_source(sources[following % len(sources)])

    def action_timestamps(self) -> None:
        self.log_view.toggle_timestamps()

    def action_dismiss_failure(self) -> None:
        failed = self.model.failed_job()
        if failed is not None:
            self.model.dismissed = failed.get("id")
            self._render_switch()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def make_app(client_factory: ClientFactory, *, readonly: bool = False,
             clock: Callable[[], float] = time.time, max_log_lines: int = 5000) -> MonitorApp:
    """The monitor, talking to whatever `client_factory()` returns (a DaemonClient in production)."""
    return MonitorApp(client_factory, readonly=readonly, clock=clock, max_log_lines=max_log_lines)
