#!/usr/bin/env bash
# `make images` / `make base-image`: build the project's container images with podman (or docker).
#
#   scripts/images.sh base            the stand-in base image (air-gapped machines only, made once)
#   scripts/images.sh build [ROLE..]  build the images (roles: cpu gpu api; default: all three)
#
# Image names come from mhubert/images.py (the one place they live); each Dockerfile's
# `ARG BASE_IMAGE=` default names its real base. Where that base cannot be pulled (no registry
# reachable) and BASE_MODE is auto, the images are built on a stand-in made from Debian packages: a
# `debootstrap --variant=minbase bookworm` root with Debian's python3.11, pip and venv, the host's CA
# certificates (so pip inside the build trusts what the host trusts), imported as $STANDIN_BASE.
#
# Environment (all optional):
#   CONTAINER_CLI  podman (default when installed) or docker
#   BASE_MODE      auto (default) | registry (the Dockerfiles' bases, pulled) | standin
#   TORCH_INDEX    the CPU-only torch index for the CPU and API images
#                  (default https://download.pytorch.org/whl/cpu; left out when it cannot be reached,
#                  and then pip takes PyPI's torch, which carries the CUDA libraries)
#   DEBIAN_MIRROR  for the stand-in (default http://deb.debian.org/debian)
#   PYTHON         an interpreter to read mhubert/images.py with (default python3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CLI=${CONTAINER_CLI:-$(command -v podman >/dev/null && echo podman || echo docker)}
BASE_MODE=${BASE_MODE:-auto}
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
STANDIN_BASE=${STANDIN_BASE:-localhost/mhubert-standin-base:bookworm-python3.11}
LOG_DIR=${LOG_DIR:-build/images}

# podman's default open-file limit (1048576) is above what a container sandbox may allow: the host's;
# processes: at most podman build's default (32768).
NOFILE=$(ulimit -Hn); [[ $NOFILE == unlimited ]] && NOFILE=1048576
NPROC=$(ulimit -Hu); [[ $NPROC == unlimited || $NPROC -gt 32768 ]] && NPROC=32768  # podman build's own
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 2; }

# podman in a container sandbox: runc, the host's network, ulimits the sandbox allows.
cli() {
  if [[ $CLI == podman ]]; then
    local rt=()
    command -v runc >/dev/null && rt=(--runtime runc)
    podman "${rt[@]}" "$@"
  else
    "$CLI" "$@"
  fi
}

image_exists() {
  if [[ $CLI == podman ]]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}

image_name() {  # role -> name, from mhubert/images.py
  PYTHONPATH=$ROOT "$PYTHON" -c "import sys; from mhubert import images; print(getattr(images, sys.argv[1]))" \
    "${1^^}_IMAGE"
}

dockerfile() { case $1 in api) echo Dockerfile ;; *) echo "images/Dockerfile.$1" ;; esac; }

default_base() {  # the real base a Dockerfile names (its ARG BASE_IMAGE default)
  sed -n 's/^ARG BASE_IMAGE=//p' "$(dockerfile "$1")" | head -n1
}

make_standin() {
  if image_exists "$STANDIN_BASE"; then log "stand-in base $STANDIN_BASE exists"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [[ $(id -u) == 0 ]] || die "the stand-in base needs root (debootstrap)"
  local rootfs="$ROOT/build/images/rootfs"
  rm -rf "$rootfs"; mkdir -p "$rootfs"
  log "debootstrap bookworm (minbase) into $rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$ROOT/$LOG_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed: see $LOG_DIR/debootstrap.log"
  # The host's extra CAs (a TLS-inspecting proxy, a corporate CA): pip in the build must trust them.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  # Like python:*-slim: pip may install into the interpreter (no PEP 668 marker), no apt lists.
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  log "importing the root as $STANDIN_BASE"
  tar -C "$rootfs" -c . | cli import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$STANDIN_BASE" >/dev/null
  rm -rf "$rootfs"
}

# Which base to build on: the Dockerfile's own when present or pullable, else the stand-in.
resolve_base() {
  local base; base=$(default_base "$1")
  [[ -n $base ]] || die "$(dockerfile "$1") has no ARG BASE_IMAGE default"
  case $BASE_MODE in
    registry) echo "$base" ;;
    standin) make_standin; echo "$STANDIN_BASE" ;;
    auto)
      if image_exists "$base" || cli pull -q "$base" >/dev/null 2>&1; then echo "$base"
      else log "$base cannot be pulled: building on the stand-in $STANDIN_BASE"; make_standin; echo "$STANDIN_BASE"
      fi ;;
    *) die "BASE_MODE must be auto, registry or standin (got $BASE_MODE)" ;;
  esac
}

torch_index() {  # the CPU torch index when it answers, else empty (pip then uses PyPI's torch)
  [[ -n $TORCH_INDEX ]] || return 0
  if "$PYTHON" - "$TORCH_INDEX" <<'PY' 2>/dev/null; then echo "$TORCH_INDEX"; else log "$TORCH_INDEX cannot be reached: the CPU and API images get PyPI's torch (with CUDA libraries)"; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=15)
PY
}

build() {
  local role=$1 name base index file start
  name=$(image_name "$role"); file=$(dockerfile "$role"); base=$(resolve_base "$role")
  index=""; [[ $role != gpu ]] && index=$(torch_index)
  local args=(build -f "$file" -t "$name" --build-arg "BASE_IMAGE=$base" --build-arg "TORCH_INDEX=$index")
  if [[ $CLI == podman ]]; then
    args+=(--pull=never --network host "${ULIMITS[@]}")
    [[ -f $file.dockerignore ]] && args+=(--ignorefile "$file.dockerignore")
  fi
  log "building $name ($file on $base) ..."
  start=$(date +%s)
  cli "${args[@]}" . >"$LOG_DIR/build-$role.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/build-$role.log" >&2; die "building $name failed: see $LOG_DIR/build-$role.log"; }
  local secs=$(( $(date +%s) - start ))
  local size; size=$(cli image inspect --format '{{.Size}}' "$name")
  printf '%s\t%s\t%s\t%s\t%s\n' "$role" "$name" "$base" "$secs" "$size" >>"$LOG_DIR/builds.tsv"
  log "built $name in ${secs}s, $(( size / 1000000 )) MB"
}

main() {
  mkdir -p "$LOG_DIR"
  local cmd=${1:-build} r roles
  shift || true
  case $cmd in
    base) make_standin ;;
    build)
      roles=("$@"); [[ ${#roles[@]} -gt 0 ]] || roles=(cpu gpu api)
      for r in "${roles[@]}"; do
        case $r in cpu|gpu|api) ;; *) die "unknown image role $r (cpu, gpu or api)" ;; esac
      done
      if [[ $CLI == podman && $(podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null) == vfs ]]; then
        log "warning: podman's storage driver is vfs (every layer a full copy: several times the disk);" \
            "overlay: docs/benchmarks.md, Container images"
      fi
      for r in "${roles[@]}"; do build "$r"; done ;;
    *) die "usage: scripts/images.sh base|build [cpu|gpu|api ...]" ;;
  esac
}

# Parsed whole before it runs: editing this file during a build does not change the running one.
main "$@"
