#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine, idempotently:
#   - Debian's dataset-fashion-mnist (the 60k/10k labelled images the models are evaluated on);
#   - the ONNX Runtime shared library, unpacked from the PyPI wheel `onnxruntime` into
#     .deps/onnxruntime/ (git ignores it; the binaries find it there on their own);
#   - iptables, for the network-partition tests;
#   - the Rust toolchain is expected (rustup's cargo), as on the project's machines.
# Nothing is downloaded from anywhere but Debian's archive and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
ORT_DIR=.deps/onnxruntime
DATA_DIR=/usr/share/datasets/fashion-mnist

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]} (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ ! -f "$DATA_DIR/t10k-images-idx3-ubyte.gz" ]; then
  apt_install dataset-fashion-mnist
fi

if ! command -v python3 >/dev/null 2>&1; then apt_install python3 python3-pip; fi
# The partition scenarios cut a coordinator replica off with iptables rules on its address.
if ! command -v iptables >/dev/null 2>&1; then apt_install iptables; fi
# Video input: ffmpeg decodes files and cameras; opencv-doc holds the real test videos (Megamind.avi, vtest.avi).
apt_install ffmpeg opencv-doc
if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi

if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "setup: fetching onnxruntime==$ORT_VERSION from PyPI for its shared library"
  wheels=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "onnxruntime==$ORT_VERSION" -d "$wheels"
  mkdir -p "$ORT_DIR"
  python3 - "$wheels" "$ORT_DIR" "$ORT_VERSION" <<'PY'
import glob, os, sys, zipfile
wheels, out, version = sys.argv[1:]
wheel = glob.glob(os.path.join(wheels, "onnxruntime-*.whl"))[0]
name = f"libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    tmp = os.path.join(out, name + ".part")
    with z.open(member) as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, os.path.join(out, name))  # atomic: a half-written library is never found
PY
  rm -rf "$wheels"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
echo "setup: ok (data in $DATA_DIR, ONNX Runtime in $ORT_DIR)"
