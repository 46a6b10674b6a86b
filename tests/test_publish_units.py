"""The publish step gives the serving bundle a units index of the SERVED model: fit on its features at
``units_layer`` into ``serving/units/`` and recorded in ``registry.json``; ``/v1/units`` on the bundle
then equals ``mhubert cluster assign`` with that index, model and layer on the same audio, without a
warning. A new model refits the index; the same model reuses it."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from helpers.api_assets import make_assets
from helpers.clustering import make_corpus

from api.app import create_app
from api.service import ModelService
from api.settings import Settings
from components.publish import publish
from mhubert.artifacts import Manifest, RunLayout, StaleArtifact
from mhubert.cli import main
from mhubert.errors import BadInput

LAYER, K = 2, 6
OPTS = ["index_factory=OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr", "memory_budget_gb=0.001"]


def _publish(ckpt: str, root: str, out: str, manifest: str, lid: str = "", on_change: str = "stop") -> str:
    served = SimpleNamespace(metadata={}, path=out)
    return publish.python_func(model_uri=ckpt, output_root=root, iteration=3, served=served, lid_uri=lid,
                               manifest_uri=manifest, preset="tiny", units_layer=LAYER, units_clusters=K,
                               cluster_overrides=OPTS, on_change=on_change)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("publish"))
    assets = make_assets(os.path.join(base, "assets"))
    manifest = make_corpus(base)
    root = os.path.join(base, "run")
    served = _publish(assets["ckpt"], root, os.path.join(base, "served"), manifest, assets["lid"])
    bundle = RunLayout(root).serving
    labels = os.path.join(base, "labels")
    assert main(["cluster", "assign", "--manifest", manifest, "--out", bundle.units_index.url,
                 "--labels", labels, "--features", "hubert", "--model", bundle.model.url,
                 "--layer", str(LAYER), "--device", "cpu", "--quiet", "--preset", "tiny"]) == 0
    km = [f for f in os.listdir(labels) if f.endswith(".km")]
    with open(os.path.join(labels, km[0])) as f:
        ref = [[int(x) for x in line.split()] for line in f]
    m = Manifest.read(manifest)
    bodies = [open(m.url_of(i), "rb").read() for i in range(len(m))]
    return {"base": base, "root": root, "bundle": bundle, "served": served, "ref": ref, "bodies": bodies,
            "manifest": manifest, "assets": assets}


def _units(settings: Settings, bodies: list[bytes]) -> list[list[int]]:
    with TestClient(create_app(settings)) as c:
        info = c.get("/v1/models").json()["models"][0]
        assert info["units_layer"] == LAYER and info["num_units"] == K
        out = []
        for body in bodies:
            r = c.post("/v1/units", content=body)
            assert r.status_code == 200, r.text
            out.append(r.json()["units"])
        return out


def test_bundle_records_the_served_models_index(run):
    bundle = run["bundle"]
    assert bundle.is_committed() and bundle.units_index.is_committed()
    bundle.verify()
    reg = bundle.registry()
    assert run["served"] == bundle.model.url == reg["model"]
    units = reg["units"]
    assert units["index"] == bundle.units_index.url and units["layer"] == LAYER
    assert units["model"] == bundle.model.url and len(units["model_digest"]) == 64
    feats = bundle.units_index.info["features"]
    assert feats["model"] == bundle.model.url and feats["layer"] == LAYER


def test_bundle_serves_units_equal_cluster_assign(run, caplog):
    with caplog.at_level(logging.WARNING):
        got = _units(Settings(model_uri=run["bundle"].url, eager_load=True), run["bodies"])
    assert got == run["ref"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("api")]
    # the same index served by its parts: model, index directory, layer
    b = run["bundle"]
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        got = _units(Settings(model_uri=b.model.url, index_uri=b.units_index.url, units_layer=LAYER,
                              eager_load=True), run["bodies"][:2])
    assert got == run["ref"][:2]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("api")]


def test_index_of_the_bundle_refuses_another_model(run):
    other = make_assets(os.path.join(run["base"], "other"), seed=1)
    b = run["bundle"]
    with pytest.raises(BadInput, match="was fit on"):
        ModelService(Settings(model_uri=other["ckpt"], index_uri=b.units_index.url)).load()


def test_republish_reuses_then_refits_for_a_new_model(run, capsys):
    b = run["bundle"]
    index_file = b.units_index.index_url
    marker = open(b.marker_url).read()
    before = os.stat(index_file).st_mtime_ns, b.registry()["units"]["model_digest"]
    lid = run["assets"]["lid"]
    capsys.readouterr()
    # the same model, LID head, manifest and options: the committed bundle as it is
    _publish(run["assets"]["ckpt"], run["root"], os.path.join(run["base"], "served2"), run["manifest"], lid)
    assert f"{b.url}: reused" in capsys.readouterr().out
    assert open(b.marker_url).read() == marker
    assert (os.stat(index_file).st_mtime_ns, b.registry()["units"]["model_digest"]) == before
    # another model: never the old bundle; under the default it stops before any work, naming it
    other = make_assets(os.path.join(run["base"], "new"), seed=2)
    with pytest.raises(StaleArtifact, match=r"input model:.*--force"):
        _publish(other["ckpt"], run["root"], os.path.join(run["base"], "served3"), run["manifest"], lid)
    assert open(b.marker_url).read() == marker
    # with force: exported, refit and committed again
    _publish(other["ckpt"], run["root"], os.path.join(run["base"], "served3"), run["manifest"], lid,
             on_change="force")
    assert b.is_committed()
    reg = b.registry()
    assert reg["units"]["model_digest"] != before[1] and os.stat(index_file).st_mtime_ns != before[0]
    with TestClient(create_app(Settings(model_uri=b.url, eager_load=True))) as c:
        assert c.post("/v1/units", content=run["bodies"][0]).status_code == 200
