# syntax=docker/dockerfile:1
# One image for every SalesPulse role; the command picks it:
#   docker run salespulse ingest | worker | exporter | run (all three in one process)
# Settings come from SALESPULSE_* variables (README, Configuration); production needs at
# least SALESPULSE_KAFKA_BOOTSTRAP and SALESPULSE_REDIS_URL (the embedded broker and Redis
# of `make run` are not in this image). It listens on 0.0.0.0, so an ingest also needs
# SALESPULSE_INGEST_TOKEN and an exporter SALESPULSE_READ_TOKEN (or tenants' own tokens):
# without them they refuse to start (README, "Access").
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler only here, for a dependency without a wheel for the build platform; the
# runtime stage copies the finished virtualenv and ships without it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/salespulse
WORKDIR /src
# Dependencies in their own layer, so that a code change does not reinstall them.
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/salespulse/bin/pip install --upgrade pip \
    && /opt/salespulse/bin/pip install -c constraints.txt -r /tmp/requirements.txt
COPY salespulse ./salespulse
COPY handlers ./handlers
COPY streams ./streams
COPY metrics ./metrics
RUN /opt/salespulse/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/salespulse/bin/pip install --no-deps /wheels/salespulse-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="salespulse" \
      org.opencontainers.image.description="Real-time sales KPIs from CRM webhooks" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric id, so Kubernetes can check runAsNonRoot without resolving a name.
RUN groupadd --system --gid 10001 salespulse \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/salespulse \
       --no-create-home --shell /usr/sbin/nologin salespulse \
    && install -d -o 10001 -g 10001 /var/lib/salespulse
COPY --from=builder /opt/salespulse /opt/salespulse
# Listen on every interface (the default 127.0.0.1 is unreachable from other containers);
# faust keeps its small working directory under the data dir.
ENV PATH="/opt/salespulse/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SALESPULSE_HTTP_HOST=0.0.0.0 \
    SALESPULSE_HTTP_PORT=8080 \
    SALESPULSE_DATA_DIR=/var/lib/salespulse
WORKDIR /var/lib/salespulse
USER 10001:10001
EXPOSE 8080
# Liveness: the process serves HTTP. Readiness (broker/Redis reachable) is GET /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SALESPULSE_HTTP_PORT', '8080'), timeout=3)"
ENTRYPOINT ["salespulse"]
CMD ["run"]
