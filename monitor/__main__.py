"""`llm-monitor [--config C] [--socket S] [--readonly]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llm_mcp import __version__
from llm_mcp.config import paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-monitor",
        description="Terminal dashboard for llm-mcp: GPU, system, the live llama-server log, and `m` "
                    "to switch models. Starts the daemon when none runs; quitting never stops the model.")
    parser.add_argument("--version", action="version", version=f"llm-monitor {__version__}")
    parser.add_argument("--config", help="models.conf (default: $LLM_MCP_CONFIG, ./models.conf, then the "
                        "user config dir); used when the monitor has to start the daemon")
    parser.add_argument("--socket", help="daemon socket (default: $LLM_MCP_SOCKET or the user runtime dir)")
    parser.add_argument("--readonly", action="store_true", help="watch only: no switching, no stopping")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from llm_mcp.clients.client import DaemonClient
    from monitor.app import make_app

    socket_path = paths.socket_path(args.socket)
    config_path = paths.config_path(args.config)

    def client() -> DaemonClient:
        return DaemonClient(socket_path, config_path=config_path, name="llm-monitor")

    make_app(client, readonly=args.readonly).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
