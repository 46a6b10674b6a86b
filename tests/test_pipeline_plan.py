"""`mhubert plan`: its arithmetic against the preset YAML read here (not through the plan's code),
on the demo corpus and on a synthetic 90,000-hour manifest."""

from __future__ import annotations

import json

import pytest
import yaml

from mhubert.artifacts import Manifest, ManifestEntry
from mhubert.cli import main


def _preset(name: str) -> dict:
    from importlib.resources import files

    return yaml.safe_load(files("mhubert.presets").joinpath(f"{name}.yaml").read_text())


def _train_value(preset: dict, iteration: int, key: str, section: str = "train"):
    """The value after the iteration's own overrides (what the trainer runs with)."""
    value = preset[section][key]
    for o in preset["iterations"][iteration - 1].get("train", []):
        k, v = o.split("=", 1)
        if k in (f"{section}.{key}", key):
            value = yaml.safe_load(v)
    return value


@pytest.fixture(scope="module")
def big_manifest(tmp_path_factory):
    """90,000 hours: 9,000 languages x datasets of 10 h entries (n_samples is all the plan reads)."""
    url = str(tmp_path_factory.mktemp("plan") / "manifest.tsv")
    langs = [f"l{i:03d}" for i in range(150)]
    entries = [ManifestEntry(f"d{j % 3}/{lang}/{j}.flac", 10 * 3600 * 16000 + j, lang, f"d{j % 3}")
               for j, lang in enumerate(langs * 60)]
    Manifest("s3://corpus", entries).write(url)
    return url


def _plan(capsys, *argv) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_arithmetic_matches_the_config_at_paper_scale(big_manifest, capsys):
    p = _plan(capsys, "--manifest", big_manifest, "--preset", "base", "--nodes", "4", "--gpus-per-node", "8",
              "--gpu", "h200")
    base = _preset("base")
    m = Manifest.read(big_manifest)
    samples = [e.n_samples for e in m.entries]
    assert p["corpus"]["hours"] == pytest.approx(sum(samples) / 16000 / 3600)
    assert 89_999 < p["corpus"]["hours"] < 90_001
    assert [it["iteration"] for it in p["iterations"]] == [1, 2, 3]
    for it in p["iterations"]:
        n = it["iteration"]
        sched = base["iterations"][n - 1]
        updates = _train_value(base, n, "max_update")
        batch = base["data"]["max_tokens"] * 32 * _train_value(base, n, "update_freq")
        assert it["updates"] == updates
        # updates x batch = audio seen
        assert it["audio_hours_seen"] * 3600 * 16000 == pytest.approx(updates * batch)
        assert it["corpus_passes"] == pytest.approx(it["audio_hours_seen"] / p["corpus"]["hours"])
        # labels bytes = frames x 2 (uint16), frames at the iteration's label rate
        hop = 16000 // sched["label_rate"]
        assert it["label_frames"] == sum(s // hop for s in samples)
        assert it["label_bytes"] == it["label_frames"] * 2
        dim = 39 if sched["features"] == "mfcc" else base["model"]["embed_dim"]
        rows = int(base["clustering"]["memory_budget_gb"] * 1e9 // (dim * 4))
        assert (it["feature_dim"], it["sample_rows"], it["sample_bytes"]) == (dim, rows, rows * dim * 4)
        assert it["sample_repeats"] == pytest.approx(rows / it["label_frames"])
        assert it["index_bytes"] == sched["num_clusters"] * dim * 4
        # the recorded H200 rate: device-hours = audio seen / rate, wall = device-hours / GPUs
        assert it["device_hours"] == pytest.approx(updates * batch / 16000 / 733.0 / 3600)
        assert it["wall_hours"] == pytest.approx(it["device_hours"] / 32)
    # the paper-scale figure of the performance anchors: ~4,200 H200-hours per iteration
    assert 4_000 < p["iterations"][0]["device_hours"] < 4_500
    assert "H200" in p["rate"]["source"]


def test_overrides_and_an_unknown_gpu(big_manifest, capsys):
    p = _plan(capsys, "--manifest", big_manifest, "--preset", "base", "--nodes", "1", "--gpus-per-node", "2",
              "--gpu", "b200", "--iterations", "1", "--set", "train.max_update=1000", "--set",
              "data.max_tokens=1000000")
    (it,) = p["iterations"]
    assert it["updates"] == 1000 and it["samples_per_update"] == 2_000_000
    assert it["device_hours"] is None and p["rate"]["source"] is None  # says so rather than guessing
    assert main(["plan", "--manifest", big_manifest, "--iterations", "1", "--gpu", "b200"]) == 0
    assert "no recorded figure" in capsys.readouterr().out


def test_demo_corpus_plan_reads_like_a_table(synth_corpus, capsys):
    assert main(["plan", "--manifest", synth_corpus["manifest"], "--preset", "tiny",
                 "--gpus-per-node", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("corpus: ") and len(out) == 2 + 3
    assert all(line.startswith(f"iteration {n} (") for n, line in zip((1, 2, 3), out[2:], strict=True))
    assert "each frame ~" in out[2] and "labels " in out[2]


def test_bad_input_is_one_line(big_manifest, tmp_path, capsys):
    assert main(["plan", "--manifest", str(tmp_path / "none.tsv")]) == 2
    assert main(["plan", "--manifest", big_manifest, "--nodes", "0"]) == 2
    assert main(["plan", "--manifest", big_manifest, "--set", "train.max_updates=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("mhubert plan: error: ") for e in err), err
