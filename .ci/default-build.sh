#!/usr/bin/env bash
# Manual check (not part of .ci/run: it downloads ~3.5 GB from PyPI): build the image the default way
# grand-challenge participants do — torch 2.10.0 + CUDA 12 wheels from the package index, no local
# wheels — on a stand-in base carrying this machine's CA bundle (its network has a TLS proxy), then
# run test.sh on it. Needs the engine that .ci/container.sh starts.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=hnseg-ci-base:bookworm-py311-hostca
IMAGE=${HNSEG_IMAGE:-hnseg:cu12}
bash .ci/base-image.sh --host-ca "$BASE"
./build.sh --tag "$IMAGE" --base "$BASE" -- --network host
docker run --rm --network none --entrypoint python "$IMAGE" -c \
  'import torch, torchvision; print("torch", torch.__version__, "CUDA", torch.version.cuda, "torchvision", torchvision.__version__)'
./test.sh --no-build --image "$IMAGE"
