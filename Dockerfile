# Warden as a sidecar or standalone proxy.
#   docker build -t warden .
#   docker run -p 8080:8080 -v $PWD/warden.yaml:/etc/warden/warden.yaml warden
# For a GPU scanner, build FROM an image with CUDA and install torch's CUDA build instead of the
# CPU one (TORCH_INDEX below). Named detoxify checkpoints: see docs/scanner.md ("Toxicity models")
# for a build stage that fetches and converts them at build time.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY detectors ./detectors
COPY drift ./drift
# scanner: torch + transformers models; pii: presidio + spaCy; local: the llama.cpp server of `warden up`.
# toxic-comment-classifier declares tensorflow, which the torch port does not use: --no-deps.
RUN pip install torch --index-url "$TORCH_INDEX" \
 && pip install '.[local,scanner,pii]' \
 && pip install --no-deps toxic-comment-classifier==0.3.0 \
 && useradd --system --uid 10001 --home-dir /app warden && chown -R warden /app
USER warden
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["warden"]
CMD ["serve", "--config", "/etc/warden/warden.yaml", "--host", "0.0.0.0"]
