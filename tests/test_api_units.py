"""``POST /v1/units``: the labelling pass's units, served. The reference is ``mhubert cluster assign``
(sample -> fit -> assign from the command line) with the same model, layer and index on the same audio."""

from __future__ import annotations

import os

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.api_assets import make_assets, tone, wav_bytes

from api.app import create_app
from api.service import ModelService, dedup_units
from api.settings import Settings
from mhubert.errors import BadInput

LAYER = 2
CLIPS = [(1.3, 180.0), (0.9, 260.0), (1.7, 340.0), (1.1, 420.0), (1.5, 500.0), (0.7, 610.0)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Audio files + manifest, the tiny model, and a factory index fit on its layer-2 features by the CLI;
    then the CLI's labels of the same files."""
    from mhubert.cli import main

    root = str(tmp_path_factory.mktemp("units"))
    assets = make_assets(os.path.join(root, "assets"))
    audio_dir = os.path.join(root, "audio")
    os.makedirs(os.path.join(audio_dir, "ds", "en"))
    rows, bodies = [], []
    for i, (sec, hz) in enumerate(CLIPS):
        body = wav_bytes(tone(sec, freq=hz, seed=i))
        with open(os.path.join(audio_dir, "ds", "en", f"u{i}.wav"), "wb") as f:
            f.write(body)
        rows.append(f"ds/en/u{i}.wav\t{int(sec * 16000)}\ten\tds")
        bodies.append(body)
    manifest = os.path.join(root, "manifest.tsv")
    with open(manifest, "w") as f:
        f.write(audio_dir + "\n" + "\n".join(rows) + "\n")
    clu, labels = os.path.join(root, "clu"), os.path.join(root, "labels")
    feats = ["--features", "hubert", "--model", assets["ckpt"], "--layer", str(LAYER), "--device", "cpu"]
    assert main(["cluster", "sample", "--manifest", manifest, "--out", clu, "--budget-gb", "0.001",
                 "--quiet", "--preset", "tiny", *feats]) == 0
    assert main(["cluster", "fit", "--out", clu, "--preset", "tiny", "--num-clusters", "6",
                 "--index-factory", "OPQ16_64,IVF{K}_HNSW32,PQ16x4fsr"]) == 0
    assert main(["cluster", "assign", "--manifest", manifest, "--out", clu, "--labels", labels,
                 "--quiet", "--preset", "tiny", *feats]) == 0
    km = [f for f in os.listdir(labels) if f.endswith(".km")]
    with open(os.path.join(labels, km[0])) as f:
        ref = [[int(x) for x in line.split()] for line in f]
    return {"assets": assets, "clu": clu, "bodies": bodies, "ref": ref, "root": root}


def _app(setup, **kw):
    settings = Settings(model_uri=setup["assets"]["ckpt"], index_uri=setup["clu"], eager_load=True, **kw)
    return create_app(settings)


def test_units_equal_cluster_assign(setup):
    with TestClient(_app(setup)) as c:
        for body, ref in zip(setup["bodies"], setup["ref"], strict=True):
            r = c.post("/v1/units", content=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["layer"] == LAYER and out["num_units"] == 6 and out["frame_rate"] == 50
            assert out["units"] == ref and out["durations"] is None
            text = c.post("/v1/units?format=fairseq", content=body).text
            assert text == " ".join(map(str, ref)) + "\n"
        info = c.get("/v1/models").json()["models"][0]
        assert info["units_layer"] == LAYER and info["num_units"] == 6


def test_units_dedup_and_durations(setup):
    with TestClient(_app(setup)) as c:
        body, ref = setup["bodies"][2], setup["ref"][2]
        out = c.post("/v1/units?dedup=true", content=body).json()
    assert sum(out["durations"]) == len(ref) and min(out["durations"]) >= 1
    assert np.repeat(out["units"], out["durations"]).tolist() == ref
    assert all(a != b for a, b in zip(out["units"], out["units"][1:], strict=False))


def test_dedup_units_like_textless():
    u = dedup_units([3, 3, 1, 1, 1, 3, 7])
    assert u.ids == [3, 1, 3, 7] and u.durations == [2, 3, 1, 1]
    assert dedup_units([]).ids == []


def test_units_are_batch_invariant(setup):
    """Each job's units alone equal its units in one batch with the others."""
    from api.service import Job
    from mhubert.audio import decode, normalize

    svc = ModelService(Settings(model_uri=setup["assets"]["ckpt"], index_uri=setup["clu"]))
    svc.load()
    b = svc.bundle
    wavs = [normalize(decode(x)) for x in setup["bodies"]]
    alone = [svc.run_batch([Job(b, w, "units")])[0] for w in wavs]
    together = svc.run_batch([Job(b, w, "units") for w in wavs])
    for a, t, ref in zip(alone, together, setup["ref"], strict=True):
        assert a.tolist() == t.tolist() == ref


def test_bad_index_or_layer_fails_at_startup(setup, tmp_path):
    ckpt = setup["assets"]["ckpt"]
    # the index records layer 2: another --units-layer is refused
    with pytest.raises(BadInput, match="layer 2"):
        ModelService(Settings(model_uri=ckpt, index_uri=setup["clu"], units_layer=3)).load()
    with pytest.raises(BadInput, match="out of range"):
        ModelService(Settings(model_uri=ckpt, index_uri=setup["clu"] + "/index.faiss", units_layer=9)).load()
    # fit on another model (recorded): refused
    other = make_assets(str(tmp_path / "other"), seed=1)
    with pytest.raises(BadInput, match="fit on"):
        ModelService(Settings(model_uri=other["ckpt"], index_uri=setup["clu"])).load()
    # a plain index file has no record: it needs --units-layer, then it is served (with a warning)
    with pytest.raises(BadInput, match="--units-layer"):
        ModelService(Settings(model_uri=ckpt, index_uri=setup["clu"] + "/index.faiss")).load()
    svc = ModelService(Settings(model_uri=ckpt, index_uri=setup["clu"] + "/index.faiss", units_layer=LAYER))
    assert svc.load().units.layer == LAYER
    # a dimension that does not match the model
    import faiss

    flat = faiss.IndexFlatL2(39)
    flat.add(np.random.default_rng(0).standard_normal((5, 39)).astype(np.float32))
    faiss.write_index(flat, str(tmp_path / "mfcc.faiss"))
    with pytest.raises(BadInput, match="39-d"):
        ModelService(Settings(model_uri=ckpt, index_uri=str(tmp_path / "mfcc.faiss"), units_layer=1)).load()
    with pytest.raises(BadInput, match="not found"):
        ModelService(Settings(model_uri=ckpt, index_uri=str(tmp_path / "none.faiss"), units_layer=1)).load()


def test_units_without_index_is_409(setup):
    with TestClient(create_app(Settings(model_uri=setup["assets"]["ckpt"], eager_load=True))) as c:
        r = c.post("/v1/units", content=setup["bodies"][0])
    assert r.status_code == 409 and r.json()["error"]["code"] == "units_not_loaded"


def test_serve_cli_stops_on_a_bad_index(setup, capsys):
    from mhubert.cli import main

    rc = main(["serve", "--model", setup["assets"]["ckpt"], "--index", setup["clu"], "--units-layer", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and "layer 2" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_serving_bundle_layout_serves_model_lid_and_units(setup, tmp_path):
    """``--model`` pointed at a serving bundle (``model/``, ``lid/``, ``units/``, ``registry.json``)."""
    import shutil

    from mhubert import storage
    from mhubert.artifacts import ServingBundle
    from mhubert.model import load_model, save_hf

    sb = ServingBundle(str(tmp_path / "serving"))
    save_hf(load_model(setup["assets"]["ckpt"]), sb.model.url)
    shutil.copytree(setup["assets"]["lid"], sb.lid.url)
    shutil.copytree(setup["clu"], sb.units_index.url, ignore=shutil.ignore_patterns("sample"))
    # the index was fit on the checkpoint; the bundle serves its transformers export: the record says so
    storage.atomic_write_json(sb.path(sb.REGISTRY), {
        "model": sb.model.url, "lid": sb.lid.url,
        "units": {"index": sb.units_index.url, "layer": LAYER, "model": sb.model.url}})
    with TestClient(create_app(Settings(model_uri=sb.url, eager_load=True))) as c:
        info = c.get("/v1/models").json()["models"][0]
        assert info["source"] == sb.model.url and info["lid_languages"] and info["units_layer"] == LAYER
        out = c.post("/v1/units", content=setup["bodies"][0]).json()
        assert out["units"] == setup["ref"][0]
        assert c.post("/v1/lid", content=setup["bodies"][0]).status_code == 200
