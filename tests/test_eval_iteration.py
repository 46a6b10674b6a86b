"""The evaluate step's probes (``superb`` preset section, :mod:`mhubert.eval.iteration`): the layout
under ``eval/superb``, the FBANK baseline only when asked, the KFP figures and the
square confusion matrix; the demo's per-iteration table; the section's checks before a run starts."""

from __future__ import annotations

import os

import pytest
from eval_toy import make_toy_corpus
from sklearn.metrics import confusion_matrix

from mhubert import storage
from mhubert.artifacts import RunLayout
from mhubert.cli import main
from mhubert.config import load_sections
from mhubert.errors import BadInput
from mhubert.eval.config import SuperbConfig
from mhubert.eval.iteration import flat_metrics, lid_confusion, probe_url, read_probes, run_probes, tasks_for


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy")), per_lang=40)


@pytest.fixture(scope="module")
def probed(toy, tmp_path_factory):
    """Iteration 1 of a run root probed with fbank standing in for the model, and the baseline."""
    run = RunLayout(str(tmp_path_factory.mktemp("run")))
    ev = run.iteration(1).eval
    cfg = SuperbConfig(tasks="lid,asr+lid", train_per_lang="20s", max_steps=2, batch_size=4,
                       test_max_seconds=4.0, dev_max_seconds=3.0, seed=3)
    res = run_probes("fbank", toy, ev.superb_url, cfg, baseline=True)
    return run, cfg, res


def test_layout_and_what_is_read_back(probed):
    run, cfg, res = probed
    superb = run.iteration(1).eval.superb_url
    assert set(res) == {"model", "fbank"} and all(set(v) == {"lid", "asr+lid"} for v in res.values())
    for name in ("model", "fbank"):
        for task in ("lid", "asr+lid"):
            url = probe_url(superb, name, task)
            assert storage.is_committed(url)
            m = storage.read_json(storage.join(url, "metrics.json"))
            assert m == res[name][task] and m["seed"] == 3 and m["steps"] == 2 and m["standard"] is False
            probe = storage.read_json(storage.join(url, "training.json"))["probe"]
            assert probe["batch_size"] == 4 and probe["max_steps"] == 2
    assert probe_url(superb, "model", "asr+lid").endswith("/model/asr_lid")
    assert read_probes(superb) == res
    assert read_probes(run.iteration(2).eval.superb_url) == {}
    # the cache is shared by the tasks: one file for the upstream
    assert len(os.listdir(storage.join(superb, "cache"))) == 1


def test_figures_and_square_confusion(probed):
    run, _, res = probed
    flat = flat_metrics(res)
    assert set(flat) == {"lid_lid_accuracy", "asr_lid_cer", "asr_lid_lid_accuracy", "fbank_lid_lid_accuracy",
                         "fbank_asr_lid_cer", "fbank_asr_lid_lid_accuracy"}
    assert flat["asr_lid_cer"] == res["model"]["asr+lid"]["cer"]["overall"]
    cats, matrix = lid_confusion(run.iteration(1).eval.superb_url, res["model"])
    url = probe_url(run.iteration(1).eval.superb_url, "model", "lid")
    pred = {}
    for line in storage.read_text(storage.join(url, "predictions.tsv")).splitlines()[1:]:
        path, lang, predicted = line.split("\t")[:3]
        pred[path] = (lang, predicted or "none")
    true, hyp = zip(*pred.values(), strict=True)
    assert matrix == confusion_matrix(list(true), list(hyp), labels=cats).tolist()
    assert cats[:2] == ["hi", "lo"] and len(matrix) == len(cats) == len(matrix[0])
    assert lid_confusion(run.iteration(1).eval.superb_url, {"asr": {}}) is None


def test_demo_table(probed):
    from pipelines.demo import probe_table

    run, _, res = probed
    ev = run.iteration(1).eval
    ev.write_json(ev.QUALITY, {"language": {"pnmi": 0.1234}, "unit_lid": {"cross_condition_accuracy": 0.5}})
    storage.atomic_write_json(storage.join(ev.lid_eval_url, "metrics.json"), {"accuracy": 0.75})
    lines = probe_table(run, [1, 2])
    assert "20s of training audio per language" in lines[0] and "non-standard" in lines[0]
    head = lines[1].split()
    assert head == ["PNMI", "unit", "LID", "LID", "head", "probe", "LID", "probe", "CER"]
    fb, it1 = lines[2].split(), lines[3].split()
    fbank = res["fbank"]["asr+lid"]
    assert fb == ["FBANK", "-", "-", "-", f"{fbank['lid_accuracy']:.3f}", f"{fbank['cer']['overall']:.3f}"]
    model = res["model"]["asr+lid"]
    assert it1 == ["iteration", "1", "0.123", "0.500", "0.750", f"{model['lid_accuracy']:.3f}",
                   f"{model['cer']['overall']:.3f}"]
    assert len(lines) == 4 and probe_table(run, [2]) == []


def test_section_checks():
    assert SuperbConfig(tasks="none").task_list == []
    assert SuperbConfig(tasks="lid, asr").task_list == ["lid", "asr"]
    for bad, needle in (({"tasks": "lid,pos"}, "pos"), ({"train_per_lang": "ten"}, "training duration"),
                        ({"max_steps": 0}, "max_steps"), ({"dev_max_seconds": 0}, "dev_max_seconds")):
        with pytest.raises(BadInput, match=needle):
            SuperbConfig(**bad)
    for preset in ("base", "tiny"):
        cfg = load_sections(preset, {"superb": SuperbConfig}, ["superb.seed=7"])["superb"]
        assert cfg.seed == 7 and cfg.task_list
    assert load_sections("base", {"superb": SuperbConfig})["superb"].train_per_lang == "10min"


def test_a_corpus_without_transcripts_gets_the_lid_probe_only():
    assert tasks_for(["asr+lid"], False) == ["lid"] and tasks_for(["lid", "asr+lid"], False) == ["lid"]
    assert tasks_for(["asr"], False) == [] and tasks_for(["asr", "lid"], True) == ["asr", "lid"]


def test_pipeline_run_checks_the_section_first(tmp_path, capsys):
    corpus = tmp_path / "c" / "ds" / "en"
    corpus.mkdir(parents=True)
    (corpus / "a.wav").write_bytes(b"")
    args = ["pipeline", "run", "--local", "--corpus", str(tmp_path / "c"), "--root", str(tmp_path / "r"),
            "--dry-run"]
    assert main([*args, "--set", "superb.tasks=lid,pos"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pos" in err[0], err
    assert main([*args, "--set", "superb.max_steps=5", "--set", "superb.tasks=none"]) == 0
    assert "superb.max_steps=5 superb.tasks=none" in capsys.readouterr().out
