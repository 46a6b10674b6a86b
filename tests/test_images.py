"""Static checks of images/ (no Docker engine here): pinned bases and requirements, COPY sources and
the default command exist, a non-root user, dependencies agree with pyproject/requirements.lock,
and hadolint (when installed) reports nothing."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu"]
# served by the API image (top-level Dockerfile), not by the pipeline images
API_ONLY = {"fastapi", "uvicorn", "python-multipart"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def instructions(path: Path) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        buf += " " + s.rstrip("\\").strip() if buf else s.rstrip("\\").strip()
        if not s.endswith("\\"):
            op, _, rest = buf.partition(" ")
            out.append((op.upper(), rest.strip()))
            buf = ""
    return out


def _ignored(ignore_file: Path, path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes. Good enough for top-level
    paths and ``*`` globs (what these files use)."""
    import fnmatch

    ignored = False
    for line in ignore_file.read_text().splitlines():
        pat = line.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
            ignored = not neg
    return ignored


def requirements(path: Path) -> dict[str, str]:
    """Pinned requirements of a file, following ``-r`` includes."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("--"):
            continue
        if line.startswith("-r "):
            inc = path.parent / line[3:].strip()
            assert inc.exists(), f"{path.name} includes missing {inc.name}"
            pins.update(requirements(inc))
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        assert m, f"{path.name}: {line!r} is not pinned with =="
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def base_images(path: Path) -> list[str]:
    """The base of each FROM, with ``${ARG}`` taken from the ARG defaults declared before the first FROM
    (how builders resolve it when no ``--build-arg`` is given)."""
    ins = instructions(path)
    first = next(i for i, (op, _) in enumerate(ins) if op == "FROM")
    args = dict(a.split("=", 1) for op, a in ins[:first] if op == "ARG" and "=" in a)
    out = []
    for op, a in ins:
        if op == "FROM":
            ref = a.split()[0]
            out.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], ref))
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_an_argument(name):
    """`make images` builds on a stand-in base where no registry answers (scripts/images.sh): every
    stage's FROM is ``${BASE_IMAGE}``, whose default is the real base."""
    froms = [a.split()[0] for op, a in instructions(IMAGES / name) if op == "FROM"]
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_pinned(name):
    froms = base_images(IMAGES / name)
    assert froms
    for image in froms:
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+[\w.\-]*$", image), \
            f"{name}: base {image} is not pinned to an exact version or digest"
        assert not image.endswith(":latest")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_and_command_exist(name):
    ins = instructions(IMAGES / name)
    copies = [shlex.split(a) for op, a in ins if op in ("COPY", "ADD")]
    assert copies
    for args in copies:
        srcs = [a for a in args[:-1] if not a.startswith("--")]
        for s in srcs:
            assert (ROOT / s).exists(), f"{name}: COPY source {s} does not exist (context = repo root)"
    cmds = [op_a for op_a in ins if op_a[0] in ("CMD", "ENTRYPOINT")]
    assert cmds
    for _, a in cmds:
        import json

        argv = json.loads(a)
        assert argv[0] == "python"
        if "-m" in argv:
            mod = argv[argv.index("-m") + 1].replace(".", "/")
            assert (ROOT / mod / "__main__.py").exists() or (ROOT / f"{mod}.py").exists(), \
                f"{name}: module {mod} does not exist"
    # BuildKit uses images/<Dockerfile>.dockerignore over the root one: it must let the sources in
    ignore = IMAGES / f"{name}.dockerignore"
    assert ignore.exists(), f"{name} needs {ignore.name} (the root .dockerignore serves the API image)"
    for args in copies:
        for s in (a for a in args[:-1] if not a.startswith("--")):
            assert not _ignored(ignore, s.rstrip("/")), f"{name}: {s} is excluded by {ignore.name}"
    # the code the components and the PyTorchJob import is in the image
    copied = {Path(a[-2]).parts[0] for a in copies}
    assert {"mhubert", "components", "pipelines"} <= copied


@pytest.mark.parametrize("name", DOCKERFILES)
def test_non_root_user(name):
    users = [a for op, a in instructions(IMAGES / name) if op == "USER"]
    assert users, f"{name} sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # the last USER comes after every RUN that needs root
    ops = [op for op, _ in instructions(IMAGES / name)]
    last_user = max(i for i, op in enumerate(ops) if op == "USER")
    assert last_user > max(i for i, op in enumerate(ops) if op == "RUN")


@pytest.mark.parametrize("name,extra", [("requirements-cpu.txt", {"faiss-cpu"}),
                                        ("requirements-gpu.txt", {"faiss-gpu-cu12"})])
def test_requirements_pinned_and_complete(name, extra):
    pins = requirements(IMAGES / name)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = {_norm(re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0]) for d in deps} - API_ONLY - {"faiss-cpu"}
    assert needed | extra <= set(pins), f"{name} misses {sorted((needed | extra) - set(pins))}"
    # the same versions the tests run with
    lock = requirements(ROOT / "requirements.lock")
    for pkg, ver in pins.items():
        if pkg in lock:
            assert ver.split("+")[0] == lock[pkg], f"{name}: {pkg}=={ver} but the lock has {lock[pkg]}"


def test_components_install_nothing_at_run_time():
    from components import COMPONENT_OPTIONS

    assert COMPONENT_OPTIONS["packages_to_install"] == []
    assert COMPONENT_OPTIONS["install_kfp_package"] is False
    for f in (ROOT / "components").glob("*.py"):
        assert "pip install" not in f.read_text(), f.name


@pytest.mark.skipif(shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
                    reason="hadolint not installed")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name):
    exe = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    proc = subprocess.run([exe, "--no-color", str(IMAGES / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_make_images_rejects_an_unknown_role_before_building(tmp_path):
    """`make images IMAGES=...` with a role that has no Dockerfile stops with one line, exit code 2,
    before any base image is resolved or built."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "build", "cpu", "tpu"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CONTAINER_CLI": "false", "LOG_DIR": str(tmp_path / "logs")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "images: unknown image role tpu (cpu, gpu or api)"


def test_images_test_builds_nothing_and_names_a_missing_image():
    """`make images-test` on a machine where the image is not built says which, exit code 2."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "images_test.py"), "api"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "CONTAINER_CLI": "false",
                               "MHUBERT_API_IMAGE": "localhost/mhubert-api:not-built"})
    assert proc.returncode == 2, proc.stderr
    assert "localhost/mhubert-api:not-built is not built (make images)" in proc.stderr
