"""Static checks of the service image's Dockerfile and .dockerignore (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import os
import re

import yaml

ROOT = os.path.join(os.path.dirname(__file__), "..")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            op, _, args = buf.partition(" ")
            out.append((op.upper(), args.strip()))
            buf = ""
    return out


def ignored(path: str) -> bool:
    """Docker's rule: a path is excluded when the last pattern matching it (or a directory above it) is
    not a ``!`` exception."""
    lines = open(os.path.join(ROOT, ".dockerignore")).read().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    parts = path.removeprefix("./").rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for pat in patterns:
        neg, pat = pat.startswith("!"), pat.lstrip("!")
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for p in prefixes):
            out = not neg
    return out


def test_multistage_with_pinned_base():
    """Every stage is ``FROM ${BASE_IMAGE}`` (so `make images` can build on a stand-in where no registry
    answers), and the argument's default is the pinned python slim image."""
    ins = instructions()
    froms = [a.split()[0] for op, a in ins if op == "FROM"]
    assert len(froms) >= 2 and all(f == "${BASE_IMAGE}" for f in froms), froms
    first = next(i for i, (op, _) in enumerate(ins) if op == "FROM")
    defaults = dict(a.split("=", 1) for op, a in ins[:first] if op == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", defaults["BASE_IMAGE"])


def test_every_copy_source_exists_and_is_in_the_context():
    for op, args in instructions():
        if op not in ("COPY", "ADD"):
            continue
        assert op == "COPY", "use COPY, not ADD"
        parts = [p for p in args.split() if not p.startswith("--")]
        if any(p.startswith("--from") for p in args.split()):
            continue
        for src in parts[:-1]:
            assert os.path.exists(os.path.join(ROOT, src)), f"COPY source {src} does not exist"
            assert not ignored(src), f"COPY source {src} is excluded by .dockerignore"


def test_runs_as_non_root_matching_the_chart():
    users = [a for op, a in instructions() if op == "USER"]
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    import helm_python as helm

    with helm.Chart.load(os.path.join(ROOT, "charts", "mhubert-api")) as chart:
        deployment = yaml.safe_load(chart.render({}, name="r")["mhubert-api/templates/deployment.yaml"])
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)
    last_stage = instructions()[max(i for i, (op, _) in enumerate(instructions()) if op == "FROM"):]
    assert any(op == "USER" for op, _ in last_stage), "USER must be set in the final stage"


def test_port_cmd_and_no_healthcheck_or_secrets():
    ins = instructions()
    ops = [op for op, _ in ins]
    assert "HEALTHCHECK" not in ops
    assert ("EXPOSE", "8080") in ins
    cmd = json.loads([a for op, a in ins if op == "CMD"][-1])
    assert cmd[:2] == ["mhubert", "serve"]
    for op, args in ins:
        if op in ("ENV", "ARG"):
            assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)\w*=", args, re.I), args


def test_dockerignore_keeps_the_context_small_and_secret_free():
    for path in (".git", ".venv", "tests", ".env", "model.pt", "sub/__pycache__/x.pyc"):
        assert ignored(path), path
    for path in ("mhubert/cli.py", "api/app.py", "pyproject.toml", "images/requirements-api.txt"):
        assert not ignored(path), path
    for path in ("images/Dockerfile.cpu", "images/requirements-cpu.txt", "pipelines/cli.py"):
        assert ignored(path), path


def _pins(path: str) -> dict[str, str]:
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    out = {}
    for line in open(path).read().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, ver = line.partition("==")
            assert sep and ver, f"{os.path.basename(path)}: {line!r} is not pinned with =="
            out[norm(name)] = ver
    return out


# what `mhubert serve` runs without a module imported only inside a function: onnx/onnxruntime (the ONNX
# backends) are imported when such a backend is chosen, so they are listed here
SERVING_CODE = """
import importlib.metadata as md, json, sys
import api.app, api.server, api.cli, mhubert.clustering.index, mhubert.model.onnx, mhubert.cli, s3fs
mhubert.cli.build_parser()
import onnx, onnxruntime
top, dists = {m.split(".")[0] for m in sys.modules}, md.packages_distributions()
print(json.dumps(sorted({d for t in top for d in dists.get(t, [])})))
"""
# the pipeline's and the trainer's packages: not in the service image
PIPELINE_ONLY = {"kfp", "kfp-kubernetes", "kubeflow", "kubeflow-training", "kubernetes", "scikit-learn",
                 "lhotse", "matplotlib", "tensorboard", "pyarrow", "langcodes", "language-data",
                 "transformers", "google-cloud-storage"}


def test_api_requirements_are_the_serving_closure_at_the_lock_versions():
    """images/requirements-api.txt holds every distribution the service imports that pyproject names,
    at requirements.lock's versions, and none of the pipeline's packages."""
    import subprocess
    import sys
    import tomllib

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    pins = _pins(os.path.join(ROOT, "images", "requirements-api.txt"))
    lock = _pins(os.path.join(ROOT, "requirements.lock"))
    for pkg, ver in pins.items():
        assert lock.get(pkg) == ver, f"requirements-api.txt: {pkg}=={ver}, the lock has {lock.get(pkg)}"
    assert not PIPELINE_ONLY & set(pins), sorted(PIPELINE_ONLY & set(pins))
    proc = subprocess.run([sys.executable, "-c", SERVING_CODE], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": os.path.abspath(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {norm(d) for d in json.loads(proc.stdout.splitlines()[-1])}
    direct = {norm(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in tomllib.loads(
        open(os.path.join(ROOT, "pyproject.toml")).read())["project"]["dependencies"]}
    missing = (imported & direct) - set(pins)
    assert not missing, f"the service imports {sorted(missing)}, which requirements-api.txt lacks"
    assert {"torch", "fastapi", "uvicorn", "onnxruntime"} <= imported & set(pins)
