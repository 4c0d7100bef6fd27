#!/usr/bin/env bash
# Create .venv (Python 3.11) with hnseg and its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements-torch.txt
python -m pip install -q -r requirements.txt -r requirements-test.txt
python -m pip install -q --no-deps -e .
python - <<'PY'
import torch, torchvision, timm, nnunetv2, SimpleITK, evalutils.stats  # noqa: F401  (matched pair check)
print(f"hnseg environment ready: torch {torch.__version__}, torchvision {torchvision.__version__}")
PY
