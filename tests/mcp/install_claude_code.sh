#!/usr/bin/env bash
# Installs the Claude Code CLI (the main MCP client, real) for tests/mcp/test_claude_code.py.
# Idempotent: does nothing when the pinned version is already there.
# Location: $LLM_MCP_CLAUDE_DIR, else ${LLM_MCP_CACHE:-~/.cache/llm-mcp}/claude-code.
# Without npm (or the registry) it warns and exits 0, so the tests skip; under CI=true it
# exits 1, as the tests would fail.
set -euo pipefail
version="${LLM_MCP_CLAUDE_VERSION:-2.1.328}"
dir="${LLM_MCP_CLAUDE_DIR:-${LLM_MCP_CACHE:-$HOME/.cache/llm-mcp}/claude-code}"
pkg="@anthropic-ai/claude-code"
installed="$dir/node_modules/$pkg/package.json"
bin="$dir/node_modules/.bin/claude"

give_up() {
  echo "install_claude_code.sh: $1; the Claude Code tests will $([[ "${CI:-}" == true ]] && echo fail || echo skip)" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 0
}

works() { [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; }

if [[ -f "$installed" ]] && grep -q "\"version\": \"$version\"" "$installed" && works; then
  echo "Claude Code $version already installed in $dir"
  exit 0
fi
command -v npm >/dev/null || give_up "npm is missing (Debian: apt-get install nodejs npm)"
mkdir -p "$dir"
[[ -f "$dir/package.json" ]] || echo '{"name": "llm-mcp-test-claude-code", "private": true}' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$pkg@$version" ||
  give_up "npm install $pkg@$version failed"
# npm may skip the postinstall script that puts the native binary in place: run it ourselves.
if ! works && [[ -f "$dir/node_modules/$pkg/install.cjs" ]]; then
  (cd "$dir/node_modules/$pkg" && node install.cjs) || give_up "$pkg's install.cjs failed"
fi
works || give_up "$bin --version does not run after the install"
echo "Claude Code $("$bin" --version) installed in $dir"
