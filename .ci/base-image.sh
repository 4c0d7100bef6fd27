#!/usr/bin/env bash
# Build a stand-in for the python:3.11-slim base image from Debian packages (no image registry is
# reachable from CI): debootstrap a minimal bookworm with python3 + venv, then `docker import` it.
# Usage: .ci/base-image.sh [--host-ca] [TAG]   (default hnseg-ci-base:bookworm-py311)
#   --host-ca   also copy this machine's CA bundle into the image and point pip at it, so that a
#               build of the default (package-index) path can reach PyPI through this network's
#               TLS proxy (use with build.sh -- --network host). CI-only: the Dockerfile knows nothing of it.
set -euo pipefail
HOST_CA=0
if [ "${1:-}" = --host-ca ]; then HOST_CA=1; shift; fi
TAG=${1:-hnseg-ci-base:bookworm-py311}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG already present"; exit 0
fi
# Use the same Debian mirror this machine's apt uses (deb822 or one-line sources).
MIRROR=${DEBIAN_MIRROR:-$(
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
    grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } | grep -v security | head -n1 || true)}
[ -n "$MIRROR" ] || { echo "base-image: no Debian mirror found in apt sources; set DEBIAN_MIRROR" >&2; exit 1; }
ROOT=$(mktemp -d /tmp/hnseg-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "debootstrap bookworm (minbase + python3) into $ROOT"
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3 \
  bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -n 30 "$ROOT.log" >&2; exit 1; }
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/tmp/*
CHANGES=()
if [ "$HOST_CA" = 1 ]; then
  mkdir -p "$ROOT/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
  CHANGES=(--change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt')
fi
tar -C "$ROOT" -c . | docker import "${CHANGES[@]}" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$TAG" >/dev/null
docker run --rm --network none "$TAG" python -c 'import sys, venv; print("stand-in base:", sys.version.split()[0])'
