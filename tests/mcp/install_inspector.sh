#!/usr/bin/env bash
# Installs the MCP Inspector CLI (a real third-party MCP client) for tests/mcp/test_inspector.py.
# Idempotent: does nothing when the pinned version is already there.
# Location: $LLM_MCP_INSPECTOR_DIR, else ${LLM_MCP_CACHE:-~/.cache/llm-mcp}/npm.
# Without npm (or the registry) it warns and exits 0, so the tests skip; under CI=true it
# exits 1, as the tests would fail.
set -euo pipefail
version="${LLM_MCP_INSPECTOR_VERSION:-2.12.0}"
dir="${LLM_MCP_INSPECTOR_DIR:-${LLM_MCP_CACHE:-$HOME/.cache/llm-mcp}/npm}"
pkg="@modelcontextprotocol/inspector"
installed="$dir/node_modules/$pkg/package.json"

give_up() {
  echo "install_inspector.sh: $1; the MCP Inspector tests will $([[ "${CI:-}" == true ]] && echo fail || echo skip)" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 0
}

if [[ -f "$installed" ]] && grep -q "\"version\": \"$version\"" "$installed"; then
  echo "MCP Inspector $version already installed in $dir"
  exit 0
fi
command -v npm >/dev/null || give_up "npm is missing (Debian: apt-get install nodejs npm)"
mkdir -p "$dir"
[[ -f "$dir/package.json" ]] || echo '{"name": "llm-mcp-test-tools", "private": true}' >"$dir/package.json"
# Node 20 prints engine warnings for 2.12.0; it works.
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$pkg@$version" ||
  give_up "npm install $pkg@$version failed"
echo "MCP Inspector $version installed in $dir"
