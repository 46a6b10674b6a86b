# syntax=docker/dockerfile:1
# The service image: `mhubert serve` (FastAPI + uvicorn) as a non-root user on port 8080.
# Build: docker build -t mhubert-api .   Run: docker run -p 8080:8080 -e MHUBERT_MODEL_URI=s3://... mhubert-api
# Health is checked by Kubernetes probes (/v2/health/live, /v2/health/ready), so there is no HEALTHCHECK.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock pyproject.toml ./
COPY mhubert ./mhubert
COPY api ./api
# Runtime dependencies only (pyproject's list), at the versions of the lock file. The README is not
# shipped, so the package metadata does not reference it.
RUN sed -i '/^readme *=/d' pyproject.toml \
    && pip install --constraint requirements.lock . \
    && python -c "import api.app, mhubert.model, soundfile, torch"

FROM python:3.11.14-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 mhubert \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin mhubert
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MHUBERT_HOST=0.0.0.0 \
    MHUBERT_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
CMD ["mhubert", "serve"]
