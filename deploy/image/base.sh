#!/usr/bin/env bash
# The image's base: a minimal Debian 12 (bookworm) with Python 3.11, made with debootstrap from Debian's mirror
# (no Docker Hub here), imported into podman as localhost/trading-signals-base:bookworm. It also carries:
# - this machine's CA bundle (a TLS-intercepting proxy's CA included), so that pip and uv inside the build reach PyPI;
# - the CPU torch wheel in /wheels, and uv told to take it (UV_FIND_LINKS, UV_CONSTRAINT): an unpinned torch from
#   PyPI is the CUDA build, gigabytes.
# The debootstrapped tree is cached as a tarball under ~/.cache/trading-signals, so a rebuild takes seconds.
set -euo pipefail
IMAGE=${BASE_IMAGE:-localhost/trading-signals-base:bookworm}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/trading-signals
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}

if podman image exists "$IMAGE" && [ "${REBUILD_BASE:-0}" != 1 ]; then
  echo "base image $IMAGE exists (REBUILD_BASE=1 rebuilds it)"; exit 0
fi
mkdir -p "$CACHE"
TARBALL="$CACHE/bookworm-python3.11-rootfs.tar"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ! -s "$TARBALL" ]; then
  echo "debootstrap: a minimal bookworm with python3.11 (a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1 \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$WORK/rootfs" -cf "$TARBALL" .
  rm -rf "$WORK/rootfs"
fi
mkdir -p "$WORK/rootfs"
tar -C "$WORK/rootfs" -xf "$TARBALL"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$WORK/rootfs/wheels"
"$ROOT/.venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps -c "$ROOT/constraints.txt" \
  -d "$WORK/rootfs/wheels" torch
WHEEL=$(basename "$(ls "$WORK"/rootfs/wheels/torch-*.whl)")
VERSION=$(echo "$WHEEL" | cut -d- -f2)
case "$VERSION" in *+cpu) ;; *) echo "torch wheel $WHEEL is not a CPU build"; exit 1 ;; esac
echo "torch==$VERSION" >"$WORK/rootfs/wheels/constraints.txt"
tar -C "$WORK/rootfs" -c . | podman import \
  --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV UV_NATIVE_TLS=true" \
  --change "ENV PIP_BREAK_SYSTEM_PACKAGES=1" \
  --change "ENV UV_FIND_LINKS=/wheels" \
  --change "ENV UV_CONSTRAINT=/wheels/constraints.txt" \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  - "$IMAGE" >/dev/null
echo "base image $IMAGE: bookworm, python 3.11, torch $VERSION wheel"
