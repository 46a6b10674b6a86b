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
    lines = open(os.path.join(ROOT, ".dockerignore")).read().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    parts = path.removeprefix("./").rstrip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for pat in patterns
               for p in prefixes)


def test_multistage_with_pinned_base():
    froms = [a for op, a in instructions() if op == "FROM"]
    assert len(froms) >= 2
    for a in froms:
        image = a.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


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
    for path in ("mhubert/cli.py", "api/app.py", "pyproject.toml", "requirements.lock"):
        assert not ignored(path), path
