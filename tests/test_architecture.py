"""The direction of imports (import-linter's contracts in pyproject.toml), no import cycle between
the package's modules (grimp, which also sees function-local imports), no guard around the
package's own imports, and a console command whose ``--help`` loads no heavy library."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "faiss", "kfp", "transformers")
OWN = ("mhubert", "api", "pipelines", "components")


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_import_contracts_hold():
    """`lint-imports` (import-linter) on the contracts of pyproject.toml: the layers, the library
    under its shells, data not importing the model, the model not importing training."""
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=_env(),
                       timeout=300)
    assert "Contracts:" in r.stdout, r.stdout + r.stderr  # it ran and read our contracts
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and " 0 broken" in r.stdout


def _strongly_connected(deps: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module (= the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(deps):
        if start in index:
            continue
        work = [(start, iter(sorted(deps.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(deps.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_tarjan_finds_a_planted_cycle():
    """The cycle finder below is ours: it must find a cycle when there is one."""
    deps = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _strongly_connected(deps) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_package_modules():
    import grimp

    # `if TYPE_CHECKING:` imports are for annotations only, never executed: not a cycle
    graph = grimp.build_graph("mhubert", exclude_type_checking_imports=True)
    deps = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(deps) > 40  # the whole package was read
    cycles = _strongly_connected(deps)
    assert not cycles, "import cycles (grimp sees function-local imports too): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def _guarded_own_imports(path: Path) -> list[str]:
    """``try: import <own module> ... except ImportError``, ``find_spec("<own module>")`` and
    ``pytest.importorskip("<own module>")``."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            catches = any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                          or isinstance(h.type, ast.Tuple) and any(
                              isinstance(e, ast.Name) and e.id in ("ImportError", "ModuleNotFoundError")
                              for e in h.type.elts) for h in node.handlers)
            if not catches:
                continue
            for sub in node.body:
                for n in ast.walk(sub):
                    mod = n.module if isinstance(n, ast.ImportFrom) else None
                    names = [a.name for a in n.names] if isinstance(n, ast.Import) else [mod or ""]
                    if isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                            x.split(".")[0] in OWN for x in names if x):
                        found.append(f"{path.relative_to(ROOT)}:{n.lineno}")
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and getattr(func, "attr", getattr(func, "id", "")) in (
                "find_spec", "importorskip"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] in OWN:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_guard_around_the_package_own_imports():
    """Nor a test that skips when one of the package's own modules fails to import."""
    files = [p for d in (*OWN, "tests") for p in (ROOT / d).rglob("*.py") if p.name != "test_architecture.py"]
    assert len(files) > 40
    bad = [hit for p in files for hit in _guarded_own_imports(p)]
    assert not bad, f"the package's own modules are imported under an ImportError guard at {bad}"


def test_guard_finder_finds_a_guard(tmp_path, monkeypatch):
    p = ROOT / "mhubert" / "__init__.py"  # any file under ROOT, parsed from a string here
    src = ("try:\n    from mhubert.lid import train\nexcept ImportError:\n    pass\nfind_spec('api.cli')\n"
           "pytest.importorskip('mhubert.clustering.assign')\npytest.importorskip('transformers')\n")
    monkeypatch.setattr(Path, "read_text", lambda self: src)
    assert _guarded_own_imports(p) == [f"mhubert/__init__.py:{n}" for n in (2, 5, 6)]


HELP_PROBE = r"""
import argparse, contextlib, io, json, sys, time
t0 = time.perf_counter()
from mhubert.cli import build_parser
parser = build_parser()
leaves = []
def walk(p, prefix):
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    leaves.append(prefix)
    if subs:
        for name, child in subs[0].choices.items():
            walk(child, prefix + [name])
walk(parser, [])
codes = {}
for cmd in leaves:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            build_parser().parse_args(cmd + ["--help"])
        except SystemExit as e:
            codes[" ".join(cmd)] = (e.code, "usage:" in out.getvalue())
print(json.dumps({"codes": codes, "heavy": sorted(m for m in HEAVY if m in sys.modules),
                  "seconds": time.perf_counter() - t0}))
"""


def test_help_of_every_command_imports_no_heavy_library():
    """In a fresh interpreter (this test process has torch loaded already): ``mhubert --help`` and
    every ``mhubert <cmd> ... --help`` work and leave torch, faiss, kfp and transformers unloaded."""
    code = f"HEAVY = {HEAVY!r}\n" + HELP_PROBE
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"", "corpus manifest", "cluster fit", "train run", "pipeline run", "serve", "lid train",
            "demo"} <= set(res["codes"]), sorted(res["codes"])
    bad = {c: v for c, v in res["codes"].items() if v != [0, True]}
    assert not bad, f"--help failed for {bad}"
    assert res["heavy"] == [], f"--help imported {res['heavy']}"


def test_console_command_help_in_a_fresh_process():
    r = subprocess.run([sys.executable, "-m", "mhubert", "--help"], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0 and "pipeline" in r.stdout and "serve" in r.stdout, (
        r.stdout + r.stderr + "\n(the shells register `serve`/`pipeline` through the `mhubert.commands` "
        "entry points: reinstall with `pip install --no-deps --no-build-isolation -e .`)")


def test_unknown_flag_shows_the_subcommand_usage():
    r = subprocess.run([sys.executable, "-m", "mhubert", "cluster", "fit", "--out", "x", "--nope"],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: mhubert cluster fit"), r.stderr
    assert r.stderr.strip().splitlines()[-1] == "mhubert cluster fit: error: unrecognized arguments: --nope"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", [["corpus", "manifest"], ["pipeline", "run"], ["lid", "train"]])
def test_parser_builds_subcommands(cmd):
    from mhubert.cli import build_parser

    p = build_parser()
    for word in cmd:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    assert p.prog == "mhubert " + " ".join(cmd)


def test_schema_tests_fail_instead_of_skipping_in_ci(tmp_path):
    """Without the schemas, a schema test fails under .ci/run's flag (locally it skips)."""
    test = "tests/test_jobs_pytorchjob.py::test_render_validates_against_crd"
    env = {**_env(), "MHUBERT_SCHEMAS_DIR": str(tmp_path / "absent"), "MHUBERT_REQUIRE_SCHEMAS": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and "must not skip" in r.stdout and "skipped" not in r.stdout, r.stdout[-2000:]
    assert "export MHUBERT_REQUIRE_SCHEMAS=1" in (ROOT / ".ci" / "run").read_text()
