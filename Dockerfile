# Warden as a sidecar or standalone proxy. Build: docker build -t warden .
# Run:   docker run -p 8080:8080 -v $PWD/warden.yaml:/etc/warden/warden.yaml warden
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY detectors ./detectors
COPY drift ./drift
# [local] adds the llama.cpp server used by `warden up`; drop it for a proxy-only image.
RUN pip install '.[local]' && useradd --system --uid 10001 warden
USER warden
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["warden"]
CMD ["serve", "--config", "/etc/warden/warden.yaml", "--host", "0.0.0.0"]
