#!/usr/bin/env bash
# Installs everything llm-mcp and its tests need, idempotently, and starts the
# Docker daemon when none answers. Each step is skipped when its inputs did not
# change, so a warm run costs seconds:
#   1. Debian packages (docker.io, docker-compose, debootstrap, tmux, ...)
#   2. dockerd, started in the background when `docker info` fails
#   3. .venv with the project installed editable (keyed by pyproject.toml's hash)
#   4. the local images (images/build.sh; the llama-server binary is cached by version)
# Usage: scripts/bootstrap.sh [--no-images] [--extras test|demo]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras=test
images=1
while (($#)); do
  case "$1" in
    --no-images) images=0 ;;
    --extras) extras="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
say() { printf '[bootstrap] %s\n' "$*" >&2; }

packages=(docker.io docker-compose debootstrap busybox-static tmux procps iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo_=""; [[ $(id -u) == 0 ]] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  sudo_=""; [[ $(id -u) == 0 ]] || sudo_=sudo
  $sudo_ setsid nohup dockerd >/tmp/llm-mcp-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/llm-mcp-dockerd.log >&2; say "dockerd did not start"; exit 1; }
fi

# One stamp per extra installed for this pyproject.toml: the test extra includes the demo
# extra (pyproject: test = ["llm-mcp[demo]", ...]), so `test` stamps both and a demo run after
# a test run installs nothing; a changed pyproject.toml invalidates every stamp.
hash="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=".venv/.installed-$hash-$extras"
if [[ ! -f "$stamp" ]]; then
  say "creating .venv (extras: $extras)"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".[$extras]" 2>&1 | grep -v -e '^WARNING: Location' -e '^$' >&2 || true
  .venv/bin/python -c "import llm_mcp, monitor" || { say "pip install failed"; exit 1; }
  find .venv -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
  touch "$stamp"
  [[ $extras == test ]] && touch ".venv/.installed-$hash-demo"
fi

if ((images)); then
  bash images/build.sh >&2
fi
say "ready"
