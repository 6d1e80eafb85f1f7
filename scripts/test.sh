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
# Two workers (one per core here); a file's tests stay on one worker (fixtures per module).
# Then the tests that measure time against a bound, alone (tests/conftest.py SERIAL_FILES).
# A pass that selects nothing (arguments naming only one kind) is not a failure: pytest's 5.
pass() { "$@" || { rc=$?; [[ $rc -eq 5 ]] || exit "$rc"; }; }
echo "== pytest (two workers)"
pass .venv/bin/pytest -p no:cacheprovider -n 2 --dist loadfile -m "not serial" "$@"
echo "== pytest (timing-sensitive, alone)"
pass .venv/bin/pytest -p no:cacheprovider -m serial "$@"
