#!/usr/bin/env bash
# Sets up everything and runs every check: ruff, mypy and the whole test suite
# (unit, real Docker, real llama-server, MCP clients, the monitor in tmux).
# Extra arguments go to pytest (e.g. scripts/test.sh -k config).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh --extras test
if [[ -x tests/mcp/install_inspector.sh ]] || [[ -f tests/mcp/install_inspector.sh ]]; then
  bash tests/mcp/install_inspector.sh
fi
if [[ -f tests/mcp/install_claude_code.sh ]]; then
  bash tests/mcp/install_claude_code.sh
fi
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest -p no:cacheprovider "$@"
