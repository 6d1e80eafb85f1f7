"""`llm-mcp`: the command line. Every command but `daemon` is a client of the daemon."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from llm_mcp import __version__
from llm_mcp.config import paths
from llm_mcp.util.terminal_text import visible, visible_lines

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed (switch failed, check found problems)
EXIT_USAGE = 2  # bad arguments, unknown model, broken config
EXIT_BUSY = 3  # another switch is in flight (repeat with --force)
EXIT_UNAVAILABLE = 4  # no daemon and none could be started, or Docker unreachable
EXIT_WONT_FIT = 5  # the switch's pre-flight: the model does not fit in memory (repeat with --force)

EPILOG = """\
exit codes:
  0  ok
  1  the operation failed (switch failed and was reported, check found errors)
  2  usage error, unknown model, or a broken models.conf
  3  busy: another switch is in flight (repeat with --force to replace it)
  4  the daemon or Docker is unavailable
  5  won't fit: the model does not fit in free memory; nothing was stopped
     (`llm-mcp fit ID --suggest` shows what fits; --force loads it anyway)

locations: --config / $LLM_MCP_CONFIG / ./models.conf / the user config dir;
--socket / $LLM_MCP_SOCKET / the user runtime dir; $LLM_MCP_STATE_DIR for logs.
Every command starts the daemon when none is running.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-mcp", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"llm-mcp {__version__}")
    _common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    daemon_help = "run the lifecycle daemon in the foreground"
    daemon = sub.add_parser(
        "daemon", parents=[common], help=daemon_help, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            f"{daemon_help}. It owns the llama-server container; every other command (and `serve`) "
            "is its client and starts it in the background when none runs. Run it by hand to watch "
            "its log, or to serve the HTTP API.", 80))
    daemon.add_argument("--http", metavar="HOST:PORT", help="also serve the HTTP API (loopback "
                        "unless a host is given explicitly)")
    daemon.add_argument("--allow-remote", action="store_true",
                        help="allow --http to bind a non-loopback address")
    _add_client_commands(sub, common)
    add_fit_command(sub, common)
    serve_help = "the MCP server (stdio for Claude Code, or streamable HTTP on /mcp)"
    serve = sub.add_parser(
        "serve", parents=[common], help=serve_help, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            f"{serve_help}. A client of the daemon (started when none runs); its tools are in "
            "docs/mcp.md. Register it with Claude Code using the command `llm-mcp check` prints "
            "(absolute paths: Claude Code does not see this venv).", 80))
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (loopback only unless "
                       "--allow-remote)")
    serve.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    serve.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    return parser


def _common(parser: argparse.ArgumentParser, default: object) -> None:
    """--config/--socket/--json work before or after the command name."""
    parser.add_argument("--config", default=default, help="models.conf (default: $LLM_MCP_CONFIG, "
                        "./models.conf, then the user config dir)")
    parser.add_argument("--socket", default=default, help="daemon socket (default: $LLM_MCP_SOCKET "
                        "or the user runtime dir)")
    parser.add_argument("--json", action="store_true", default=default or False,
                        help="machine-readable output")


def _add_client_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        return p

    add("models", "list the profiles in models.conf: * marks the running ones, WHERE where each runs, "
        "REPLACES what a switch to it would stop")
    add("status", "each running model's state, health, speed vs expected, GPU offload and last switch; "
        "the model endpoint's address and each model's requests and ttl")
    add("ps", "one line per running model: id, engine, GPUs, state, memory, the endpoint's requests "
        "(REQ: in flight+queued), TTL left, its server, uptime")
    switch = add("switch", "switch to a model and wait until it is ready (or failed)")
    switch.add_argument("model", metavar="ID", nargs="?",
                        help="profile id (see `llm-mcp models`); default: models.conf's `default`")
    switch.add_argument("--no-wait", action="store_true", help="return at once with the job id")
    switch.add_argument("--force", action="store_true",
                        help="replace a switch in flight, don't wait for generation to finish, and "
                        "load even when the pre-flight says the model won't fit in memory")
    switch.add_argument("--no-rollback", action="store_true",
                        help="on failure, leave nothing running instead of restoring the previous model")
    switch.add_argument("--timeout", type=float, metavar="S",
                        help="stop waiting after S seconds (the switch goes on in the daemon)")
    logs = add("logs", "llama-server's log, across switches")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="lines to show (default 50)")
    logs.add_argument("--grep", metavar="RE", help="only lines matching this regex (case-insensitive)")
    logs.add_argument("--run", choices=("all", "current", "previous"), default="all",
                      help="all runs with switch separators (default), the current container, or the "
                      "previous one")
    logs.add_argument("--model", metavar="ID", help="only this model's lines (and llm-mcp's notes about it)")
    stop = add("stop", "stop one model (with ID; the others keep serving) or every model (the daemon keeps "
               "running)")
    stop.add_argument("model", metavar="ID", nargs="?", help="the running model to stop (`llm-mcp ps` lists "
                      "them); default: every model")
    stop.add_argument("--force", action="store_true",
                      help="also cancel a switch in flight, and don't wait for generation to finish")
    add("check", "diagnose the setup: config, Docker, images, model files, GPU, port, daemon")
    bench = add("bench", "load each profile, measure load time, prompt and generation tokens/s and "
                "memory, store them (`models` shows them), then put back the model that ran")
    bench.add_argument("models", metavar="ID", nargs="+", help="profile ids (see `llm-mcp models`)")
    bench.add_argument("--prompt-tokens", type=int, default=512, metavar="N",
                       help="tokens in the prompt of each run (default 512)")
    bench.add_argument("--gen-tokens", type=int, default=128, metavar="N",
                       help="tokens generated by each run (default 128)")
    bench.add_argument("--repeat", type=int, default=3, metavar="N",
                       help="measured runs per profile, after one warm-up (default 3)")
    bench.add_argument("--force", action="store_true", help="replace a switch or bench in flight")
    bench.add_argument("--no-wait", action="store_true", help="return at once with the job id")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        from llm_mcp.daemon.server import run_daemon

        http = None
        if args.http:
            from llm_mcp.daemon.http_api import parse_bind

            try:
                http = parse_bind(args.http, allow_remote=args.allow_remote)
            except ValueError as exc:
                print(f"llm-mcp daemon: {exc}", file=sys.stderr)
                return EXIT_USAGE
        return run_daemon(paths.config_path(args.config), paths.socket_path(args.socket),
                          paths.state_dir(), http=http)
    if args.command == "serve":
        from llm_mcp.clients.mcp_server import run_serve

        return run_serve(args.transport, args.host, args.port, paths.socket_path(args.socket),
                         paths.config_path(args.config), allow_remote=args.allow_remote)
    if args.command == "check":
        return cmd_check(args)
    if args.command == "fit":
        return cmd_fit(args)
    command = CLIENT_COMMANDS.get(args.command)
    if command is not None:
        return run_client_command(args, command)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


# ---- running a client command ----------------------------------------------------------

Command = Callable[[Any, argparse.Namespace], Awaitable[int]]


def run_client_command(args: argparse.Namespace, command: Command) -> int:
    """Connect (starting the daemon if needed), run `command`, turn every error into one line."""
    import anyio

    from llm_mcp.clients.client import DaemonClient, DaemonUnavailable
    from llm_mcp.protocol import ProtocolError

    config_path = paths.config_path(args.config)
    socket_path = paths.socket_path(args.socket)

    async def body() -> int:
        async with DaemonClient(socket_path, config_path=config_path, name=f"cli-{args.command}") as client:
            return await command(client, args)

    try:
        return int(anyio.run(body))
    except (Exception, KeyboardInterrupt) as raised:
        exc = _first(raised)
        if isinstance(exc, ProtocolError):
            return _protocol_error(args, exc)
        if isinstance(exc, DaemonUnavailable):
            return _unavailable(args, config_path, str(exc))
        if isinstance(exc, UsageError):
            return _fail(args, EXIT_USAGE, "usage_error", str(exc))
        if isinstance(exc, BrokenPipeError):
            _silence_stdout()
            return EXIT_OK
        if isinstance(exc, ConnectionError):
            return _unavailable(args, config_path, f"the daemon connection was lost: {exc}")
        if isinstance(exc, KeyboardInterrupt):
            if args.command in ("switch", "bench"):
                print(f"\nllm-mcp: stopped waiting; the {args.command} goes on in the daemon "
                      "(`llm-mcp status`)", file=sys.stderr)
            return 130
        return _fail(args, EXIT_FAILED, "internal_error", f"unexpected error: {type(exc).__name__}: {exc}",
                     "please report it with the daemon log")


class UsageError(Exception):
    """A bad argument found after parsing (an invalid regex, say)."""


def _first(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _fail(args: argparse.Namespace, code: int, reason: str, message: str, hint: str = "",
          **extra: Any) -> int:
    """One line to stderr (plus the error as a JSON document on stdout with --json)."""
    line = f"llm-mcp {args.command}: {message}"
    if hint and hint not in message:
        line += f" (hint: {hint})"
    _say(line)
    if getattr(args, "json", False):
        _emit({"error": {"exit_code": code, "reason": reason, "message": message, "hint": hint or None,
                         **extra}})
    return code


def _protocol_error(args: argparse.Namespace, exc: BaseException) -> int:
    from llm_mcp import protocol

    assert isinstance(exc, protocol.ProtocolError)
    data = {k: v for k, v in exc.data.items() if k not in ("reason", "hint")}
    reason = exc.reason or "error"
    if exc.code == protocol.BUSY:
        job = exc.data.get("job") or {}
        kind, profile = job.get("kind", "switch"), job.get("profile")
        what = {"switch": f"a switch to '{profile}'", "bench": f"a bench of '{profile}'",
                "unload": f"an unload of '{profile}'", "stop": "a stop of every model"}.get(
                    kind, f"a {kind} of '{profile}'")
        message = (f"busy: {what} is in progress (job "
                   f"{job.get('id')}, {job.get('phase')}); wait for it or repeat with --force")
        return _fail(args, EXIT_BUSY, "busy", message, **data)
    if exc.code == protocol.WONT_FIT:
        model = exc.data.get("model") or "ID"
        return _fail(args, EXIT_WONT_FIT, "wont_fit", exc.message, f"`llm-mcp fit {model} --suggest` shows "
                     "settings that fit; repeat with --force to load it anyway", **data)
    if exc.reason == "not_running":
        running = [str(v) for v in exc.data.get("valid") or []]
        listed = f"running: {', '.join(running)}" if running else "nothing is running"
        message = exc.message if listed in exc.message else f"{exc.message} ({listed})"
        return _fail(args, EXIT_FAILED, "not_running", message, "`llm-mcp ps` lists the running models",
                     **data)
    code = {
        protocol.UNKNOWN_MODEL: EXIT_USAGE, protocol.CONFIG_ERROR: EXIT_USAGE,
        protocol.INVALID_PARAMS: EXIT_USAGE,
        protocol.PROTOCOL_MISMATCH: EXIT_UNAVAILABLE, protocol.WONT_FIT: EXIT_WONT_FIT,
    }.get(exc.code, EXIT_FAILED)
    hint = "" if exc.code == protocol.UNKNOWN_MODEL else exc.hint
    return _fail(args, code, reason, exc.message, hint, **data)


def _unavailable(args: argparse.Namespace, config_path: Path, message: str) -> int:
    """No daemon: a broken models.conf is the usual cause, and deserves its own clear line."""
    from llm_mcp.config.models_conf import ConfigError, load_config

    try:
        load_config(config_path)
    except ConfigError as exc:
        return _fail(args, EXIT_USAGE, "config_error", str(exc), "fix models.conf; `llm-mcp check` "
                     "checks the whole setup")
    lines = [ln.strip(" |+-") for ln in message.strip().splitlines() if ln.strip(" |+-")]
    first = lines[0].rstrip(":") if lines else "the daemon is unavailable"
    detail = lines[-1] if len(lines) > 1 else ""  # the daemon's last word (a traceback's last line)
    return _fail(args, EXIT_UNAVAILABLE, "daemon_unavailable", first + (f": {detail}" if detail else ""),
                 "run `llm-mcp daemon` in a terminal to see why; `llm-mcp check` diagnoses the setup")


def _emit(value: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    out.write(json.dumps(value, default=str) + "\n")
    out.flush()


def _print(text: str) -> None:
    """Human output: whatever came from a container or the daemon is escaped on the way out."""
    sys.stdout.write(visible_lines(text) + "\n")
    sys.stdout.flush()


def _say(text: str) -> None:
    """One human line to stderr, escaped like _print."""
    print(visible(text), file=sys.stderr)


# ---- the commands --------------------------------------------------------------------------


async def cmd_models(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render

    result = await client.call("list_models")
    if args.json:
        _emit(result)
    else:
        _print(render.models_table(result["models"]))
    return EXIT_OK


async def cmd_status(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render
    from llm_mcp.runtime.docker_problem import docker_down

    result = await client.call("status")
    if args.json:
        _emit(result)
    else:
        _print(render.status_text(result))
    return EXIT_UNAVAILABLE if docker_down(result) else EXIT_OK


def _default_model(client: Any, args: argparse.Namespace) -> str:
    """models.conf's `default` (the file the daemon reads), for `switch` without an id."""
    from llm_mcp.config.models_conf import ConfigError, load_config

    path = Path(str(client.hello.get("config") or paths.config_path(args.config)))
    try:
        default = load_config(path).default_profile
    except ConfigError as exc:
        raise UsageError(f"no model id given, and models.conf cannot be read for its default: "
                         f"{exc}") from None
    if default is None:
        raise UsageError(f"no model id given and {path} sets no default; give an id (`llm-mcp models` lists "
                         "them) or set `default = ID` in its [defaults] section")
    return default


async def cmd_switch(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render

    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    model = args.model if args.model is not None else _default_model(client, args)
    job = await client.call("switch", model=model, force=args.force, rollback=not args.no_rollback,
                            wait=False)
    if args.no_wait and not job["done"]:
        if args.json:
            _emit(job)
        else:
            _print(f"switching to {job['name']} (job {job['id']}); `llm-mcp status` shows progress")
        return EXIT_OK
    timed_out = False
    if not job["done"]:
        job, timed_out = await _follow_job(client, job, args)
    if args.json:
        _emit(job)
    elif timed_out:
        pass
    else:
        _print(render.outcome(job))
    if timed_out:
        _say(f"llm-mcp switch: still {job['phase'].replace('_', ' ')} after {args.timeout:g}s; the switch "
             f"goes on in the daemon (job {job['id']}; `llm-mcp status` follows it)")
        return EXIT_FAILED
    if job.get("result") == "ready":
        return EXIT_OK
    return EXIT_UNAVAILABLE if job.get("reason") == "docker_unavailable" else EXIT_FAILED


async def _follow_job(client: Any, job: dict[str, Any],
                      args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Poll the job (each poll returns early when it finishes) and show progress."""
    from llm_mcp.clients import render

    live = sys.stdout.isatty() and not args.json
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown_phases = 0
    try:
        while not job["done"]:
            if live:
                sys.stdout.write("\r\x1b[2K" + visible(render.progress_line(job)))
                sys.stdout.flush()
            elif not args.json:
                shown_phases = _print_phases(job, shown_phases)
            if deadline is not None and time.monotonic() >= deadline:
                return job, True
            wait = 0.25 if live else 1.0
            if deadline is not None:
                wait = max(0.01, min(wait, deadline - time.monotonic()))
            job = await client.call("job", id=job["id"], wait=True, timeout=wait)
    finally:
        if live:
            sys.stdout.write("\r\x1b[2K")
            sys.stdout.flush()
    if not live and not args.json:
        _print_phases(job, shown_phases)
    return job, False


def _print_phases(job: dict[str, Any], shown: int) -> int:
    phases = job.get("phases") or []
    final = job.get("result") if job.get("done") else None
    name = job.get("name") or job.get("profile")
    for entry in phases[shown:]:
        if entry.get("phase") in (final, "done"):
            continue
        _print(f"{name}: {str(entry.get('phase')).replace('_', ' ')} (at {entry.get('at', 0):.1f}s)")
    return len(phases)


async def cmd_logs(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render
    from llm_mcp.core.log_query import FilterError, FilterTimeout, LineFilter

    try:  # the daemon's matcher: bounded in time, so a bad pattern fails instead of hanging
        grep = LineFilter(args.grep) if args.grep else None
    except FilterError as exc:
        raise UsageError(f"--grep: {exc}") from None
    if args.lines < 0:
        raise UsageError("-n must be 0 or more")
    events = await client.subscribe(["log"]) if args.follow else None  # before the tail: no gap
    by_model = {"model": args.model} if args.model else {}
    result = await client.call("tail_logs", lines=args.lines, filter=args.grep or "", run=args.run,
                               **by_model)
    lines = result["lines"]
    if args.json and not args.follow:
        _emit(result)
        return EXIT_OK
    last_seq = 0
    for line in lines:
        _emit(line) if args.json else _print(render.log_line(line))
        last_seq = max(last_seq, int(line.get("seq") or 0))
    if events is None:
        return EXIT_OK
    dropped = 0
    async for event in events:
        line = event.get("data") or {}
        if int(line.get("seq") or 0) <= last_seq or (args.model and line.get("model") != args.model):
            continue
        if event.get("dropped", 0) > dropped:
            print(f"llm-mcp logs: {event['dropped'] - dropped} line(s) dropped (output too slow)",
                  file=sys.stderr)
            dropped = event["dropped"]
        try:
            if grep is not None and not grep.search(str(line.get("text", ""))):
                continue
        except FilterTimeout:
            raise UsageError("--grep took too long on a line; simplify it") from None
        _emit(line) if args.json else _print(render.log_line(line))
    print("llm-mcp logs: the daemon went away", file=sys.stderr)
    return EXIT_UNAVAILABLE


async def cmd_stop(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render

    if args.model is not None:
        job = await client.call("unload", model=args.model, force=args.force, wait=True)
    else:
        job = await client.call("stop", force=args.force, wait=True)
    if args.json:
        _emit(job)
    else:
        _print(render.outcome(job) if job.get("done") else f"still stopping (job {job['id']})")
    return EXIT_OK if job.get("result") == "stopped" else EXIT_FAILED


async def cmd_ps(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render
    from llm_mcp.runtime.docker_problem import docker_down
    from llm_mcp.wire import Status

    result = await client.call("status")  # with the GPU sample: memory_bytes comes from it
    if args.json:  # the daemon's own list; from a single-model daemon, its one model
        models = result.get("models")
        _emit(models if models is not None else
              [m.model_dump(mode="json") for m in Status.model_validate(result).running_models()])
    else:
        _print(render.ps_table(result))
    return EXIT_UNAVAILABLE if docker_down(result) else EXIT_OK


async def cmd_bench(client: Any, args: argparse.Namespace) -> int:
    from llm_mcp.clients import render

    job = await client.call("bench", models=args.models, prompt_tokens=args.prompt_tokens,
                            gen_tokens=args.gen_tokens, repeat=args.repeat, force=args.force, wait=False)
    if args.no_wait and not job["done"]:
        if args.json:
            _emit(job)
        else:
            _print(f"bench of {', '.join(args.models)} started (job {job['id']}); `llm-mcp status` shows "
                   "progress")
        return EXIT_OK
    live = sys.stdout.isatty() and not args.json
    last = ""
    try:
        while not job["done"]:  # the bench goes on in the daemon if this client quits
            line = render.bench_progress(job)
            if live:
                sys.stdout.write("\r\x1b[2K" + visible(line))
                sys.stdout.flush()
            elif not args.json and line.rsplit(" (", 1)[0] != last:
                _print(line)
                last = line.rsplit(" (", 1)[0]
            job = await client.call("job", id=job["id"], wait=True, timeout=0.5 if live else 1.0)
    finally:
        if live:
            sys.stdout.write("\r\x1b[2K")
            sys.stdout.flush()
    if args.json:
        _emit(job)
    else:
        _print(render.bench_results(job))
    if job.get("result") == "done":
        return EXIT_OK
    return EXIT_UNAVAILABLE if job.get("reason") == "docker_unavailable" else EXIT_FAILED


def cmd_check(args: argparse.Namespace) -> int:
    import anyio

    from llm_mcp.clients import check

    config_path = paths.config_path(args.config)
    findings = check.diagnose(config_path)
    findings.append(anyio.run(check.check_daemon, paths.socket_path(args.socket), config_path))
    errors = sum(f.level == "error" for f in findings)
    socket_flag = Path(args.socket) if args.socket else None
    register = check.claude_registration(config_path, os.environ, socket_flag)
    if args.json:
        _emit({"ok": errors == 0, "errors": errors, "warnings": sum(f.level == "warn" for f in findings),
               "checks": [f.to_dict() for f in findings],
               "claude_code": {"argv": register, "command": check.shell_line(register)}})
    else:
        _print(check.report(findings))
        _print("\nregister the MCP server with Claude Code (absolute paths; paste as is):\n  "
               + check.shell_line(register))
    return EXIT_FAILED if errors else EXIT_OK


CLIENT_COMMANDS: dict[str, Command] = {
    "models": cmd_models,
    "status": cmd_status,
    "ps": cmd_ps,
    "switch": cmd_switch,
    "logs": cmd_logs,
    "stop": cmd_stop,
    "bench": cmd_bench,
}


# ---- llm-mcp fit (memory estimate; no daemon needed) --------------------------------------


def add_fit_command(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "estimate a profile's memory per device from its GGUF and flags, and what fits"
    fit = sub.add_parser("fit", parents=[common], help=text, description=text + " (docs/fit.md)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("model", metavar="ID", help="profile id (see `llm-mcp models`)")
    fit.add_argument("--free-gpu", metavar="SIZE[,SIZE...]",
                     help="free memory per GPU, e.g. 24GiB or 20GiB,20GiB (default: NVML now)")
    fit.add_argument("--free-host", metavar="SIZE", help="free host RAM (default: available RAM now)")
    fit.add_argument("--suggest", action="store_true", help="print the settings that fit even when it fits")


def _gpu_free(args: argparse.Namespace) -> dict[str, int]:
    """Free bytes per GPU: from a running daemon's sample (which knows the memory of the model
    it would replace), else from NVML now. Never starts a daemon."""
    import anyio

    from llm_mcp.clients.client import DaemonClient, DaemonUnavailable
    from llm_mcp.hardware.fit import free_from_gpu_samples
    from llm_mcp.protocol import ProtocolError

    async def from_daemon() -> dict[str, Any] | None:
        async with DaemonClient(paths.socket_path(args.socket), autostart=False, name="fit") as client:
            with anyio.fail_after(5):
                gpu: dict[str, Any] | None = (await client.call("status", gpu=True)).get("gpu")
                return gpu

    try:
        snap = anyio.run(from_daemon)
    except (DaemonUnavailable, ProtocolError, OSError, TimeoutError):  # no daemon: ask NVML directly
        snap = None
    if snap is None:
        from llm_mcp.hardware.gpu import GpuSampler

        with GpuSampler() as sampler:
            snap = sampler.sample().to_dict()
    return free_from_gpu_samples(snap.get("gpus") or []) if snap.get("available") else {}


def cmd_fit(args: argparse.Namespace) -> int:
    import psutil

    from llm_mcp.config.models_conf import ConfigError, UnknownProfileError, load_config
    from llm_mcp.hardware import fit

    try:
        profile = load_config(paths.config_path(args.config)).profile(args.model)
    except ConfigError as exc:
        return _fail(args, EXIT_USAGE, "config_error", str(exc))
    except UnknownProfileError as exc:
        return _fail(args, EXIT_USAGE, "unknown_model", exc.message)
    try:
        host = fit.parse_bytes(args.free_host) if args.free_host else psutil.virtual_memory().available
        free = {"host": host}
        if args.free_gpu:
            free.update({f"gpu{i}": fit.parse_bytes(s) for i, s in enumerate(args.free_gpu.split(","))})
        else:
            free.update(_gpu_free(args))
    except ValueError as exc:
        return _fail(args, EXIT_USAGE, "bad_argument", str(exc))
    try:
        report = fit.fit_profile(profile, free, suggestions="always" if args.suggest else "auto")
    except fit.FitError as exc:
        return _fail(args, EXIT_FAILED, "model_unreadable", str(exc),
                     "`llm-mcp check` checks every model file")
    if args.json:
        _emit(report.to_dict())
    else:
        _print(fit.render(report))
    return EXIT_FAILED if report.verdict.fit == "wont_fit" else EXIT_OK
