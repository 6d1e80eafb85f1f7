#!/usr/bin/env bash
# Runs llm-monitor in a real terminal (tmux) against a live daemon, presses `m`
# and a digit, waits until the header says the picked model is ready, and saves
# the pane as text.
#
#   tests/monitor/tmux_check.sh OUT_FILE DIGIT NAME [DIGIT2 PATTERN2]
#
# OUT_FILE  where the captured pane goes
# DIGIT     the key to press in the picker (1 = the first production profile)
# NAME      the profile's display name the header must show once ready
# DIGIT2    then pick this one too ...
# PATTERN2  ... and wait until the pane matches this grep -E pattern (a failure panel)
#
# The setup comes from the environment (LLM_MCP_CONFIG, LLM_MCP_SOCKET,
# LLM_MCP_STATE_DIR); LLM_MONITOR overrides the command (default: llm-monitor);
# TMUX_CHECK_TIMEOUT bounds each wait (default 60 s); TMUX_CHECK_SIZE is the
# terminal (default 120x40). tmux runs on a private server (-L), so the user's
# own tmux sessions are never touched.
set -euo pipefail

out=${1:?usage: tmux_check.sh OUT_FILE DIGIT NAME}
digit=${2:?usage: tmux_check.sh OUT_FILE DIGIT NAME}
name=${3:?usage: tmux_check.sh OUT_FILE DIGIT NAME}
digit2=${4:-}
pattern2=${5:-}
monitor=${LLM_MONITOR:-llm-monitor}
limit=${TMUX_CHECK_TIMEOUT:-60}
size=${TMUX_CHECK_SIZE:-120x40}
server="llm-monitor-check-$$"
t=(tmux -L "$server")

cleanup() { "${t[@]}" kill-server 2>/dev/null || true; }
trap cleanup EXIT

# The wrapper keeps the pane open after a crash, so the capture shows why.
"${t[@]}" -f /dev/null new-session -d -s check -x "${size%x*}" -y "${size#*x}" \
  "$monitor; echo \"llm-monitor exited with status \$?\"; sleep 600"

pane() { "${t[@]}" capture-pane -p -t check; }

wait_for() {  # wait_for WHAT GREP_PATTERN
  local what=$1 pattern=$2 deadline=$((SECONDS + limit))
  until pane | grep -qE -- "$pattern"; do
    if ((SECONDS >= deadline)); then
      echo "tmux_check: no '$what' after ${limit}s; the pane shows:" >&2
      pane >&2
      pane >"$out"
      exit 1
    fi
    sleep 0.2
  done
}

wait_for "the dashboard, connected" '^ llm-mcp (●|○|✗|◐|◑) '
"${t[@]}" send-keys -t check m
wait_for "the model picker" 'Switch model'
"${t[@]}" send-keys -t check "$digit"
wait_for "$name ready" "^ llm-mcp ● ready  $name "
if [[ -n $digit2 ]]; then
  "${t[@]}" send-keys -t check m
  wait_for "the model picker" 'Switch model'
  "${t[@]}" send-keys -t check "$digit2"
  wait_for "$pattern2" "$pattern2"
fi
pane >"$out"
"${t[@]}" send-keys -t check q
echo "tmux_check: $name is ready; pane saved to $out"
