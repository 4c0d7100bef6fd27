# hnseg grand-challenge algorithm container (linux/amd64).
# Build with ./build.sh; validate with ./test.sh; export with ./export.sh (see README.md).

# Pinned slim Python 3.11 (Debian bookworm). CI passes a stand-in built from Debian packages.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# ---- build stage: a virtual environment with every dependency; wheels never reach the final image
FROM ${BASE_IMAGE} AS build
# TORCH_REQUIREMENTS: the torch/torchvision pins. Default: CUDA 12 wheels from PyPI (see that file).
ARG TORCH_REQUIREMENTS=requirements-torch-cuda12.txt
# LOCAL_WHEELS: a folder in the build context holding every wheel the install needs (air-gapped
# builds, CI); empty = install from the package index.
ARG LOCAL_WHEELS=""
COPY requirements.txt requirements-torch*.txt /build/
# With LOCAL_WHEELS empty this copies requirements.txt again, harmlessly: COPY needs an existing source.
COPY ${LOCAL_WHEELS:-requirements.txt} /build/wheels/
RUN python -m venv /opt/venv \
 && if [ -n "${LOCAL_WHEELS}" ]; then set -- --no-index --find-links /build/wheels; fi \
 && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check "$@" \
      -r "/build/${TORCH_REQUIREMENTS}" -r /build/requirements.txt \
 && /opt/venv/bin/python -c "import torch, torchvision, timm, nnunetv2, SimpleITK, evalutils.stats" \
 && rm -rf /build

# ---- runtime stage
FROM ${BASE_IMAGE}
# TASK: the task this image runs when its inputs fit several (SegRap task 1 and 2 share their
# sockets). grand-challenge passes no settings, so an image for one phase names its task here
# (./build.sh --task segrap-task2); empty = chosen from the input sockets (HNSEG_TASK unset).
ARG TASK=""
LABEL org.opencontainers.image.title="hnseg" \
      org.opencontainers.image.description="Head-and-neck RT target segmentation (HNTS-MRG 2024), nnU-Net v2 ensemble" \
      org.opencontainers.image.licenses="Apache-2.0"

# Nothing is written outside /tmp and /output at run time: caches and nnU-Net's folders point at /tmp,
# and the code is byte-compiled at build time.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/opt/hnseg \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=/tmp/.cache/torchinductor \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    nnUNet_raw=/tmp/nnunet/raw \
    nnUNet_preprocessed=/tmp/nnunet/preprocessed \
    nnUNet_results=/tmp/nnunet/results \
    HNSEG_INPUT=/input \
    HNSEG_OUTPUT=/output \
    HNSEG_MODEL_DIR=/opt/ml/model \
    HNSEG_TASK=${TASK}

COPY --from=build /opt/venv /opt/venv
WORKDIR /opt/hnseg
# Baked demo weights at /opt/hnseg/weights/<task>; a model tarball extracted to /opt/ml/model/<task>
# takes precedence (hnseg's weights lookup: --weights, then /opt/ml/model, then the baked folder).
COPY weights/ /opt/hnseg/weights/
COPY hnseg/ /opt/hnseg/hnseg/
COPY inference.py /opt/hnseg/
# Readable by the run-time user whatever the builder's umask was; byte-compiled; weights verified.
RUN chmod -R a+rX /opt/hnseg \
 && python -m compileall -q /opt/hnseg/hnseg /opt/hnseg/inference.py \
 && python -m hnseg weights verify /opt/hnseg/weights

# Numeric non-root user (grand-challenge rejects root images); no home directory is needed (HOME=/tmp).
USER 10001:10001
ENTRYPOINT ["python", "inference.py"]
