#!/usr/bin/env bash
# The main job on any machine, GPU or not: sets everything up, starts a demo
# configuration (the real llama-server built for the CPU, two generated tiny
# models) and opens the monitor, where `m` switches between them for real.
#
# The demo lives in its own directory with its own socket and state, so it never
# touches a real setup: ${LLM_MCP_DEMO_DIR:-~/.cache/llm-mcp/demo}.
# On a workstation with real models, skip this: edit models.conf and run
# `llm-monitor` or register `llm-mcp serve` with your agent (README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh --extras demo
demo="${LLM_MCP_DEMO_DIR:-$HOME/.cache/llm-mcp/demo}"
mkdir -p "$demo/models" "$demo/compose" "$demo/state"
[[ -f "$demo/models/tiny-a.gguf" ]] || .venv/bin/python -m llm_mcp.demo.tiny_model "$demo/models" >/dev/null
cp compose/compose.cpu.yaml "$demo/compose/compose.yaml"
if [[ ! -f "$demo/models.conf" ]]; then
  cat >"$demo/models.conf" <<CONF
# Demo profiles: the real llama-server (CPU build) with two tiny generated models.
[defaults]
instance = demo
image = llm-mcp-test/llama-server:cpu
models_dir = models
port = ${LLM_MCP_DEMO_PORT:-18181}
compose_file = compose/compose.yaml
stop_grace = 3

[tiny-a]
name = Tiny A (2 layers)
model = tiny-a.gguf
ctx_size = 512
n_gpu_layers = 0
flags = --threads 1 --parallel 1
speed = 5000

[tiny-b]
name = Tiny B (3 layers)
model = tiny-b.gguf
ctx_size = 1024
n_gpu_layers = 0
flags = --threads 1 --parallel 1
speed = 4000

[tiny-a-bench]
name = Tiny A, batch 64 (bench)
model = tiny-a.gguf
ctx_size = 512
batch_size = 64
ubatch_size = 64
n_gpu_layers = 0
flags = --threads 2 --parallel 1
bench = true

[broken]
name = Broken model file (shows a failed switch and the rollback)
model = corrupt.gguf
n_gpu_layers = 0
bench = true
CONF
fi
export LLM_MCP_CONFIG="$demo/models.conf"
export LLM_MCP_STATE_DIR="$demo/state"
export LLM_MCP_SOCKET="$demo/daemon.sock"
echo "demo config: $LLM_MCP_CONFIG  (llm-mcp commands in another shell need these three variables:)"
echo "  export LLM_MCP_CONFIG=$LLM_MCP_CONFIG LLM_MCP_STATE_DIR=$LLM_MCP_STATE_DIR LLM_MCP_SOCKET=$LLM_MCP_SOCKET"
exec .venv/bin/llm-monitor "$@"
