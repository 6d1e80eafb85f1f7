"""`llm-mcp`: the command line. Every command but `daemon` is a client of the daemon."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llm_mcp import __version__, paths

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed (switch failed, check found problems)
EXIT_USAGE = 2  # bad arguments, unknown model, broken config
EXIT_BUSY = 3  # another switch is in flight (repeat with --force)
EXIT_UNAVAILABLE = 4  # no daemon and none could be started, or Docker unreachable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-mcp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"llm-mcp {__version__}")
    _common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    daemon = sub.add_parser("daemon", parents=[common], help="run the lifecycle daemon in the foreground")
    daemon.add_argument("--http", metavar="HOST:PORT", help="also serve the HTTP API (loopback "
                        "unless a host is given explicitly)")
    daemon.add_argument("--allow-remote", action="store_true",
                        help="allow --http to bind a non-loopback address")
    return parser


def _common(parser: argparse.ArgumentParser, default: object) -> None:
    """--config/--socket/--json work before or after the command name."""
    parser.add_argument("--config", default=default, help="models.conf (default: $LLM_MCP_CONFIG, "
                        "./models.conf, then the user config dir)")
    parser.add_argument("--socket", default=default, help="daemon socket (default: $LLM_MCP_SOCKET "
                        "or the user runtime dir)")
    parser.add_argument("--json", action="store_true", default=default or False,
                        help="machine-readable output")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        from llm_mcp.daemon import run_daemon

        http = None
        if args.http:
            from llm_mcp.http_api import parse_bind

            try:
                http = parse_bind(args.http, allow_remote=args.allow_remote)
            except ValueError as exc:
                print(f"llm-mcp daemon: {exc}", file=sys.stderr)
                return EXIT_USAGE
        return run_daemon(paths.config_path(args.config), paths.socket_path(args.socket),
                          paths.state_dir(), http=http)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
