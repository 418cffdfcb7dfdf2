#!/usr/bin/env bash
# The image's two bases, made with debootstrap from Debian's mirror (no Docker Hub here) and imported into podman:
# - localhost/trading-signals-base:bookworm, what ships: a minimal Debian 12 (bookworm) with Python 3.11, Debian's
#   own CA bundle, without pip, apt's lists, locales, docs or man pages;
# - localhost/trading-signals-builder:bookworm, the first stage of deploy/image/Containerfile only, never shipped:
#   the same tree plus pip, binutils (`strip`, for deploy/image/slim.py), this machine's CA bundle (a TLS-intercepting
#   proxy's CA included, so that pip and uv reach PyPI) and the CPU torch wheel in /wheels with uv told to take it (an
#   unpinned torch from PyPI is the CUDA build).
# The debootstrapped tree is cached as a tarball under ~/.cache/trading-signals, so a rebuild takes seconds.
set -euo pipefail
IMAGE=${BASE_IMAGE:-localhost/trading-signals-base:bookworm}
BUILDER=${BUILDER_IMAGE:-localhost/trading-signals-builder:bookworm}
FLAVOUR=3 # bumped when what the bases hold changes: an older base is rebuilt
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/trading-signals
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}

flavour() { podman image inspect --format '{{index .Config.Labels "trading-signals.base"}}' "$1" 2>/dev/null || true; }
if [ "$(flavour "$IMAGE")" = "$FLAVOUR" ] && [ "$(flavour "$BUILDER")" = "$FLAVOUR" ] && [ "${REBUILD_BASE:-0}" != 1 ]; then
  echo "base images $IMAGE and $BUILDER exist (REBUILD_BASE=1 rebuilds them)"; exit 0
fi
mkdir -p "$CACHE"
TARBALL="$CACHE/bookworm-python3.11-binutils-rootfs.tar" # named by what --include lists
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ! -s "$TARBALL" ]; then
  echo "debootstrap: a minimal bookworm with python3.11 (a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,libgomp1,binutils \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$WORK/rootfs" -cf "$TARBALL" .
  rm -rf "$WORK/rootfs"
fi
mkdir -p "$WORK/rootfs"
tar -C "$WORK/rootfs" -xf "$TARBALL"
PATHS="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The runtime base first, from the tree as Debian made it (its CA bundle is Debian's).
chroot "$WORK/rootfs" dpkg --purge python3-pip python3-setuptools python3-wheel python3-pip-whl \
  python3-setuptools-whl python3-venv python3.11-venv >/dev/null 2>&1 || true
chroot "$WORK/rootfs" dpkg --purge binutils binutils-x86-64-linux-gnu binutils-common libbinutils libctf0 \
  libctf-nobfd0 libgprofng0 libjansson4 >/dev/null
if chroot "$WORK/rootfs" sh -c 'command -v strip' >/dev/null; then echo "binutils left in the runtime base"; exit 1; fi
rm -rf "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/var/cache/apt/* "$WORK/rootfs"/var/log/* \
  "$WORK/rootfs"/usr/share/doc/* "$WORK/rootfs"/usr/share/man/* "$WORK/rootfs"/usr/share/locale/* \
  "$WORK/rootfs"/usr/share/info/*
find "$WORK/rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
tar -C "$WORK/rootfs" -c . | podman import -q --change "$PATHS" --change "LABEL trading-signals.base=$FLAVOUR" \
  - "$IMAGE" >/dev/null

# The builder: Debian's tree again, with pip, this machine's CA bundle and the torch wheel.
rm -rf "$WORK/rootfs" && mkdir -p "$WORK/rootfs"
tar -C "$WORK/rootfs" -xf "$TARBALL"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$WORK/rootfs/wheels"
"$ROOT/.venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps -c "$ROOT/constraints.txt" \
  -d "$WORK/rootfs/wheels" torch
WHEEL=$(basename "$(ls "$WORK"/rootfs/wheels/torch-*.whl)")
VERSION=$(echo "$WHEEL" | cut -d- -f2)
case "$VERSION" in *+cpu) ;; *) echo "torch wheel $WHEEL is not a CPU build"; exit 1 ;; esac
echo "torch==$VERSION" >"$WORK/rootfs/wheels/constraints.txt"
tar -C "$WORK/rootfs" -c . | podman import -q \
  --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
  --change "ENV UV_NATIVE_TLS=true" \
  --change "ENV PIP_BREAK_SYSTEM_PACKAGES=1" \
  --change "ENV UV_FIND_LINKS=/wheels" \
  --change "ENV UV_CONSTRAINT=/wheels/constraints.txt" \
  --change "$PATHS" --change "LABEL trading-signals.base=$FLAVOUR" \
  - "$BUILDER" >/dev/null
echo "base images: $IMAGE (bookworm, python 3.11) and $BUILDER (+ pip, this machine's CA bundle, torch $VERSION)"
