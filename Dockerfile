# syntax=docker/dockerfile:1
# The service image: `mhubert serve` (FastAPI + uvicorn) as a non-root user on port 8080, with the serving
# dependencies only (images/requirements-api.txt). Build (`make images` does this: scripts/images.sh):
#   docker build -t ghcr.io/mhubert/mhubert-api:0.1.0 .
# Run: docker run -p 8080:8080 -e MHUBERT_MODEL_URI=s3://... ghcr.io/mhubert/mhubert-api:0.1.0
# Health is checked by Kubernetes probes (/v2/health/live, /v2/health/ready), so there is no HEALTHCHECK.
# torch: the CPU-only wheels of the PyTorch index (TORCH_INDEX, https://download.pytorch.org/whl/cpu);
# with TORCH_INDEX="" pip takes PyPI's torch of the same version, which brings the CUDA libraries.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock images/requirements-api.txt ./
# torch==X matches X+cpu: with the CPU index present pip takes its CPU-only wheel (the higher version).
RUN pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} --constraint requirements.lock \
        -r requirements-api.txt
COPY pyproject.toml ./
COPY mhubert ./mhubert
COPY api ./api
# The package without its dependencies (installed above); the README is not shipped, and neither are the
# pipeline shells, so their metadata lines go too.
RUN sed -i -E '/^readme *=/d; /^[A-Za-z_-]+ *= *"pipelines[.]/d' pyproject.toml \
    && pip install --no-deps . \
    && python -I -c "import api.app, api.server, mhubert.model, mhubert.clustering.index, soundfile, torch" \
    && mhubert serve --help >/dev/null

FROM ${BASE_IMAGE} AS runtime
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
