"""``eval superb`` end to end on a learnable toy corpus (tones per character, two pitch ranges) with
the FBANK upstream; the metrics file's schema; the CLI's one-line errors; HuBERT upstream states
against transformers' hidden states."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from eval_toy import make_toy_corpus

from mhubert import storage
from mhubert.eval.superb import run_superb
from mhubert.eval.upstream import Upstream, cached_features, load_upstream

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy")))


def _check_schema(m: dict, task: str, langs: set[str]) -> None:
    keys = {"task", "upstream", "train_per_lang", "standard", "seed", "steps", "layer_weights"}
    keys |= {"cer"} if task in ("asr", "asr+lid") else set()
    keys |= {"lid_accuracy"} if task in ("lid", "asr+lid") else set()
    assert set(m) == keys
    assert m["task"] == task and isinstance(m["upstream"], str) and isinstance(m["train_per_lang"], str)
    assert type(m["standard"]) is bool and type(m["seed"]) is int and type(m["steps"]) is int
    assert isinstance(m["layer_weights"], list) and all(isinstance(w, float) for w in m["layer_weights"])
    assert sum(m["layer_weights"]) == pytest.approx(1.0, abs=1e-4)
    if "cer" in m:
        assert set(m["cer"]) == {"overall", "per_language"}
        assert isinstance(m["cer"]["overall"], float) and set(m["cer"]["per_language"]) == langs
        assert all(isinstance(v, float) for v in m["cer"]["per_language"].values())
    if "lid_accuracy" in m:
        assert isinstance(m["lid_accuracy"], float) and 0.0 <= m["lid_accuracy"] <= 1.0


@pytest.mark.slow
def test_fbank_probe_learns_the_toy_language(toy, tmp_path):
    """The acceptance check: CER <= 0.3 and LID accuracy >= 0.9 within a minute on 2 cores (250 steps
    of the ML-SUPERB probe at its lr 1e-4; seeds 0 and 1 reached CER 0.045 / 0.035, LID 1.0)."""
    out = str(tmp_path / "asr_lid")
    m = run_superb("fbank", toy, out, task="asr+lid", train_per_lang="30s", max_steps=250, seed=0)
    assert m["cer"]["overall"] <= 0.3, m
    assert m["lid_accuracy"] >= 0.9, m
    on_disk = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert on_disk == m
    _check_schema(on_disk, "asr+lid", {"lo", "hi"})
    assert on_disk["standard"] is False and on_disk["layer_weights"] == [1.0]
    for png in ("cer_per_language.png", "lid_confusion.png"):
        assert open(os.path.join(out, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert storage.is_committed(out)
    splits = json.loads(open(os.path.join(out, "splits.json")).read())
    assert splits["speaker_disjoint"] == {"hi": True, "lo": True}
    assert all(30.0 <= s < 32.0 for s in splits["train_seconds"].values()) and splits["short"] == []


@pytest.mark.parametrize("task", ["lid", "asr"])
def test_schema_per_task(toy, tmp_path, task):
    out = str(tmp_path / task)
    m = run_superb("fbank", toy, out, task=task, train_per_lang="10min", max_steps=2, seed=5,
                   cache_dir=str(tmp_path / "cache"))
    _check_schema(json.loads(open(os.path.join(out, "metrics.json")).read()), task, {"lo", "hi"})
    assert m["standard"] is True and m["seed"] == 5 and m["steps"] == 2
    assert os.path.exists(os.path.join(out, "lid_confusion.png")) == (task == "lid")
    assert os.path.exists(os.path.join(out, "cer_per_language.png")) == (task == "asr")
    if task == "lid":
        cm = json.loads(open(os.path.join(out, "lid_confusion.json")).read())
        assert cm["labels"] == ["hi", "lo"] and cm["predicted"][:2] == ["hi", "lo"]
        n_test = len(json.loads(open(os.path.join(out, "splits.json")).read())["test"])
        assert len(cm["matrix"]) == 2 and sum(map(sum, cm["matrix"])) == n_test


def test_features_computed_once(tmp_path, toy):
    calls = []

    def extract(wav):
        calls.append(wav.numel())
        return torch.ones(1, 3, 2)

    up = Upstream("counting", 100.0, 1, 2, extract)
    root = os.path.dirname(toy)
    urls = [os.path.join(root, "audio", "lo", f"lo_{i:04d}.wav") for i in range(3)]
    cached_features(up, urls, str(tmp_path))
    cached_features(up, urls + urls[:1], str(tmp_path))
    assert len(calls) == 3
    urls.append(os.path.join(root, "audio", "hi", "hi_0000.wav"))
    assert len(cached_features(up, urls, str(tmp_path))) == 4 and len(calls) == 4


def test_model_upstream_states_match_transformers(tmp_path):
    """s3prl's HuBERT states: the projected conv features (transformers' feature_projection output),
    then each layer's output (transformers' hidden_states[1:])."""
    transformers = pytest.importorskip("transformers")
    from mhubert.model import HubertConfig, HubertModel, save_hf
    from mhubert.model.convert import save_checkpoint_model

    torch.manual_seed(0)
    model = HubertModel(HubertConfig.preset("tiny")).eval()
    save_hf(model, str(tmp_path / "hf"))
    save_checkpoint_model(model, str(tmp_path / "ckpt.pt"))
    wav = torch.randn(16000) * 0.1
    hf = transformers.HubertModel.from_pretrained(str(tmp_path / "hf")).eval()
    x = torch.nn.functional.layer_norm(wav, wav.shape)            # our models take normalised audio
    with torch.no_grad():
        ref = hf(x[None], output_hidden_states=True).hidden_states
        proj = hf.feature_projection(hf.feature_extractor(x[None]).transpose(1, 2))
        proj = proj[0] if isinstance(proj, tuple) else proj
    for uri in (str(tmp_path / "hf"), str(tmp_path / "ckpt.pt")):
        up = load_upstream(uri)
        states = up.extract(wav)
        assert up.num_states == model.cfg.num_layers + 1 == states.shape[0]
        assert up.frame_rate == 50.0 and up.dim == model.cfg.embed_dim
        torch.testing.assert_close(states[0], proj[0], atol=1e-4, rtol=1e-4)
        for i in range(1, up.num_states):
            torch.testing.assert_close(states[i], ref[i][0], atol=1e-4, rtol=1e-4)


def test_cli_bad_input_one_line(toy, tmp_path, capsys):
    from mhubert.cli import main

    out = str(tmp_path / "o")
    cases = [
        (["--model", "fbank", "--manifest", toy, "--task", "asr", "--train-per-lang", "ten",
          "--out", out], "training duration"),
        (["--model", "fbank", "--manifest", str(tmp_path / "nope.tsv"), "--task", "lid", "--out", out],
         "manifest not found"),
        (["--model", str(tmp_path / "nope.pt"), "--manifest", toy, "--task", "lid", "--out", out],
         "nope.pt"),
        (["--model", "fbank", "--manifest", toy, "--task", "lid", "--out", out, "--max-steps", "0"],
         "--max-steps"),
    ]
    for args, needle in cases:
        assert main(["eval", "superb", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and err[0].startswith("mhubert eval: error:"), err
    man = make_toy_corpus(str(tmp_path / "c"), per_lang=6)
    os.remove(os.path.join(os.path.dirname(man), "utterances.tsv"))
    assert main(["eval", "superb", "--model", "fbank", "--manifest", man, "--task", "asr", "--out", out]) == 2
    assert "needs transcripts" in capsys.readouterr().err


def test_cli_module_imports_no_torch():
    code = "import sys, mhubert.eval.cli; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
