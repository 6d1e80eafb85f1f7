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
# The config is the demo's own: rewritten when this script's version of it changed (v2:
# a model that runs beside the others, and the OpenAI/Anthropic endpoint).
if ! grep -q '^# demo config v2$' "$demo/models.conf" 2>/dev/null; then
  cat >"$demo/models.conf" <<CONF
# demo config v2
# Demo profiles: the real llama-server (CPU build) with two tiny generated models.
# tiny-a and tiny-b share the port, so one replaces the other; tiny-side asks for no GPU
# and any free port, so it runs beside either. The endpoint loads whichever a request names:
#   curl http://127.0.0.1:${LLM_MCP_DEMO_PROXY_PORT:-18182}/v1/models
[proxy]
listen = 127.0.0.1:${LLM_MCP_DEMO_PROXY_PORT:-18182}

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

[tiny-side]
name = Tiny A beside the others (no GPU, any port)
model = tiny-a.gguf
ctx_size = 512
n_gpu_layers = 0
gpus = none
port = auto
flags = --threads 1 --parallel 1
ttl = 600

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
echo "the OpenAI/Anthropic endpoint: http://127.0.0.1:${LLM_MCP_DEMO_PROXY_PORT:-18182}/v1 (a request naming a model loads it)"
exec .venv/bin/llm-monitor "$@"
