#!/usr/bin/env bash
# Create .venv with the pinned dependencies and the system packages the project needs.
# Idempotent: a second run only checks. Used by `make demo`, `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need+=(sox)
ldconfig -p 2>/dev/null | grep -q libsndfile || need+=(libsndfile1)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
stamp=.venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  # kubeflow-training (replaced by the kubeflow SDK) ships kubeflow/__init__.py too: keep one
  .venv/bin/python -m pip uninstall -y -q kubeflow-training 2>/dev/null || true
  # torch first so that nothing pulls a different build
  .venv/bin/python -m pip install -q -r requirements.lock 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import mhubert, torch, torchaudio, faiss, soundfile" \
    || { echo "bootstrap: the environment is incomplete" >&2; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi
