"""The compiled IR runs every task that requests a GPU on the GPU image and every other task on the
CPU image, with the image names of mhubert.images (and their MHUBERT_*_IMAGE overrides) as defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")
CPU, GPU = "registry.test/team/mhubert-cpu:9.9.9", "registry.test/team/mhubert-gpu:9.9.9"


def _images_by_task(spec: dict) -> list[tuple[str, str, int]]:
    """(task path, the image it runs once parameters resolve to their defaults, GPUs it requests)."""
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    out: list[tuple[str, str, int]] = []

    def value(task: dict, param: str, env: dict) -> object:
        src = task["inputs"]["parameters"][param]
        if "componentInputParameter" in src:
            return env[src["componentInputParameter"]]
        return src["runtimeValue"]["constant"]

    def walk(dag: dict, env: dict, path: str) -> None:
        for name, task in dag["tasks"].items():
            comp = spec["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                params = task.get("inputs", {}).get("parameters", {})
                walk(comp["dag"], {p: value(task, p, env) for p in params if "componentInputParameter" in
                                   params[p] or "runtimeValue" in params[p]}, f"{path}{name}/")
                continue
            container = spec["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]
            m = PLACEHOLDER.match(container["image"])
            image = value(task, m.group(1), env) if m else container["image"]
            acc = container.get("resources", {}).get("accelerator") or {}
            out.append((path + name, image, int(acc.get("resourceCount") or acc.get("count") or 0)))

    walk(spec["root"]["dag"], defaults, "")
    return out


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """``mhubert pipeline compile`` in a fresh process with the image overrides set (the images module
    reads them at import, as a user's shell would provide them)."""
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    env = {**os.environ, "MHUBERT_CPU_IMAGE": CPU, "MHUBERT_GPU_IMAGE": GPU,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mhubert", "pipeline", "compile", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return yaml.safe_load_all(out.read_text()).__next__()


def test_gpu_tasks_run_the_gpu_image(compiled):
    tasks = _images_by_task(compiled)
    gpu_tasks = [t for t in tasks if t[2] > 0]
    # the recipe's GPU stages: HuBERT-feature clustering and assignment (iterations 2, 3), evaluation
    stages = {p.split("/")[-1].rsplit("-", 1)[0] for p, _, _ in gpu_tasks}
    assert stages >= {"cluster", "assign-shard", "evaluate"}
    wrong = [(p, img, g) for p, img, g in tasks if img != (GPU if g else CPU)]
    assert not wrong, wrong
    assert any(img == CPU for _, img, _ in tasks)
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert params["cpu_image"]["defaultValue"] == CPU and params["gpu_image"]["defaultValue"] == GPU
    # the training job runs the GPU image too (the train task itself only waits on it)
    trains = [t for n, t in compiled["root"]["dag"]["tasks"].items() if n.startswith("train")]
    assert trains and all(t["inputs"]["parameters"]["image"]["componentInputParameter"] == "gpu_image"
                          for t in trains)


def test_walk_sees_a_cpu_image_on_a_gpu_task(compiled):
    """The check can fail: point one GPU task at the CPU image and it is reported."""
    spec = yaml.safe_load(yaml.safe_dump(compiled))
    for e in spec["deploymentSpec"]["executors"].values():
        if e["container"].get("resources", {}).get("accelerator"):
            e["container"]["image"] = CPU
            break
    assert any(img != (GPU if g else CPU) for _, img, g in _images_by_task(spec))


def test_images_module_defaults_and_overrides(monkeypatch):
    import importlib

    import mhubert.images as images

    monkeypatch.delenv("MHUBERT_API_IMAGE", raising=False)
    monkeypatch.setenv("MHUBERT_GPU_IMAGE", GPU)
    try:
        mod = importlib.reload(images)
        assert mod.GPU_IMAGE == GPU and mod.for_resources(1) == GPU
        assert mod.API_IMAGE.endswith("/mhubert-api:" + mod.VERSION)
        assert mod.for_resources(0) == mod.CPU_IMAGE
    finally:
        monkeypatch.undo()
        importlib.reload(images)


def test_charts_default_to_the_same_images(monkeypatch):
    """The charts cannot import mhubert.images: their defaults are pinned to it here."""
    import importlib

    import mhubert.images as images

    for var in ("MHUBERT_CPU_IMAGE", "MHUBERT_GPU_IMAGE", "MHUBERT_API_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    mod = importlib.reload(images)
    try:
        platform = yaml.safe_load((ROOT / "charts/mhubert-platform/values.yaml").read_text())
        assert (platform["images"]["cpu"], platform["images"]["gpu"]) == (mod.CPU_IMAGE, mod.GPU_IMAGE)
        api = yaml.safe_load((ROOT / "charts/mhubert-api/values.yaml").read_text())
        app_version = yaml.safe_load((ROOT / "charts/mhubert-api/Chart.yaml").read_text())["appVersion"]
        assert f"{api['image']['repository']}:{api['image']['tag'] or app_version}" == mod.API_IMAGE
    finally:
        monkeypatch.undo()
        importlib.reload(images)
