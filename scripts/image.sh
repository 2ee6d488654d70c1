#!/usr/bin/env bash
# Builds the container image mcdnn:latest (deploy/Dockerfile), idempotently and without a registry:
#   1. the base image mcdnn-base:bookworm, made locally with debootstrap (minbase + tini) from
#      Debian's archive and `docker import`ed; reused when it exists (MCDNN_REBUILD_BASE=1 redoes it);
#   2. what the image carries: scripts/setup.sh (dataset + ONNX Runtime, skipped when present),
#      the release binaries (cargo build --release; a no-op when up to date), the models/ catalog;
#   3. a staged build context in .deps/image-context/ (only what the image needs) and `docker build`.
# Usage: scripts/image.sh [base|context|build|all]   (default: all)
# Env: MCDNN_IMAGE (mcdnn:latest), MCDNN_BASE_IMAGE (mcdnn-base:bookworm),
#      DEBIAN_MIRROR (http://deb.debian.org/debian), MCDNN_SKIP_CARGO=1 (use the binaries as they are),
#      MCDNN_BIN_DIR (target/release; e.g. another checkout's, with MCDNN_SKIP_CARGO=1).
# Needs: docker, root or sudo (debootstrap), cargo. No network but Debian's archive (and PyPI
# once, through setup.sh, if .deps/onnxruntime is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${MCDNN_IMAGE:-mcdnn:latest}
BASE=${MCDNN_BASE_IMAGE:-mcdnn-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ORT_VERSION=1.31.1
ORT_LIB=.deps/onnxruntime/libonnxruntime.so.$ORT_VERSION
DATA_DIR=/usr/share/datasets/fashion-mnist
CTX=.deps/image-context
BIN_DIR=${MCDNN_BIN_DIR:-target/release}
BINS=(mcdnn-coordinator mcdnnctl mcdnn-node)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "image: $*"; }

build_base() {
  if [ "${MCDNN_REBUILD_BASE:-0}" != 1 ] && docker image inspect "$BASE" >/dev/null 2>&1; then
    log "base $BASE present, reused"
    return 0
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap (apt)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq debootstrap >/dev/null
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/mcdnn-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the trap must remove this very folder
  trap "as_root rm -rf '$rootfs'" EXIT
  log "debootstrap $SUITE (minbase + tini) from $MIRROR into $rootfs"
  as_root debootstrap --variant=minbase --include=tini "$SUITE" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # Same sources as the official image (so `apt-get install` works inside a debug container),
  # then drop what a runtime image never reads: package lists, caches, docs, man pages, locales.
  as_root tee "$rootfs/etc/apt/sources.list" >/dev/null <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  as_root sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/*.bin \
    '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/usr/share/doc/* '$rootfs'/usr/share/man/* \
    '$rootfs'/usr/share/info/* '$rootfs'/var/log/*.log '$rootfs'/tmp/* \
    && find '$rootfs'/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +"
  log "importing $BASE"
  as_root tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase --include=tini $SUITE $MIRROR" \
    - "$BASE" >/dev/null
  as_root rm -rf "$rootfs"
  trap - EXIT
}

stage_context() {
  if [ ! -f "$ORT_LIB" ] || [ ! -f "$DATA_DIR/t10k-images-idx3-ubyte.gz" ]; then
    scripts/setup.sh
  fi
  if [ "${MCDNN_SKIP_CARGO:-0}" != 1 ]; then
    log "cargo build --release (no-op when up to date)"
    cargo build --release --locked -p mcdnn-coordinator -p mcdnn-node
  fi
  for b in "${BINS[@]}"; do
    [ -x "$BIN_DIR/$b" ] || { echo "image: $BIN_DIR/$b missing" >&2; exit 1; }
  done
  log "staging build context in $CTX"
  rm -rf "$CTX.new"
  mkdir -p "$CTX.new/bin" "$CTX.new/lib" "$CTX.new/models" "$CTX.new/fashion-mnist"
  for b in "${BINS[@]}"; do
    # Debug info out (about 3/4 of the size), symbols kept so panics still name functions.
    strip --strip-debug -o "$CTX.new/bin/$b" "$BIN_DIR/$b"
  done
  cp "$ORT_LIB" "$CTX.new/lib/"
  cp models/catalog.json models/*.onnx "$CTX.new/models/"
  # The face models the coordinator computes watchlist descriptors with (--face-models).
  mkdir -p "$CTX.new/models/face"
  cp models/face/blazeface_front_128.onnx models/face/face_recognition_150.onnx \
    models/face/LICENSE-*.txt "$CTX.new/models/face/"
  cp "$DATA_DIR"/t10k-images-idx3-ubyte.gz "$DATA_DIR"/t10k-labels-idx1-ubyte.gz \
    "$CTX.new/fashion-mnist/"
  cp deploy/Dockerfile "$CTX.new/Dockerfile"
  rm -rf "$CTX" && mv "$CTX.new" "$CTX"
}

build_image() {
  local rev
  rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
  local previous
  previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  log "docker build $IMAGE (revision $rev)"
  # The legacy builder: this engine (20.10) has no buildx plugin beside it, and nothing here needs
  # BuildKit. COPY layers are cached by content, so a rerun with unchanged inputs is a no-op.
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$BASE" --label "org.opencontainers.image.revision=$rev" \
    -t "$IMAGE" "$CTX" >/dev/null
  # The image this one replaces would be left untagged: remove it unless a container uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
  docker image ls "$IMAGE" --format 'image: {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
}

case "${1:-all}" in
  base) build_base ;;
  context) stage_context ;;
  build) build_image ;;
  all) build_base; stage_context; build_image ;;
  *) echo "usage: $0 [base|context|build|all]" >&2; exit 2 ;;
esac
