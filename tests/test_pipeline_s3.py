"""The pipeline end to end over S3 (issue 10 scope 5), the suite's only full run: kfp.local's
SubprocessRunner with the corpus sources and the run root on the moto server on 127.0.0.1 (the kfp
tasks and torchrun inherit the AWS_* environment of the ``s3_server`` fixture). The corpus comes in
as released: two FLEURS layouts (headerless ``<lang_REGION>/train.tsv`` with ``num_samples``, audio
under ``audio/train/``) written to the bucket from the espeak-ng corpus, one row of each naming a clip
that is missing. One iteration of the tiny preset, then the same command again on the same root,
which must redo nothing (every stage, evaluate and publish included, says ``reused``); then the
stale-result rule (more updates stop before any work, ``--resume`` continues training, reuses
everything before it and makes evaluate and publish again from the continued model)."""

from __future__ import annotations

import re

import pytest
from helpers.releases import MISSING, write_fleurs

from mhubert import storage
from mhubert.cli import main


def _markers(run, names: tuple[str, ...]) -> dict[str, str]:
    """The marker (``_SUCCESS``, with its ``created`` time) of each named artifact of iteration 1."""
    it = run.iteration(1)
    arts = {"corpus": run.corpus, "index": it.clustering.index, "labels": it.labels, "train": it.train,
            "eval": it.eval, "serving": run.serving}
    return {n: storage.read_bytes(arts[n].marker_url).decode() for n in names}


@pytest.mark.slow
@pytest.mark.timeout(1500)  # four pipeline invocations (the 3rd stops before work): 4.5 min on 2 busy cores
def test_s3_run_from_release_layouts_then_nothing_redone(s3_bucket, synth_corpus, tmp_path, capsys):
    import transformers

    from mhubert.artifacts import RunLayout
    from mhubert.config import load_preset
    from mhubert.corpus.report import read_rejects

    srcs = [f"{s3_bucket}/releases/fleurs-{d}" for d in ("field", "studio")]
    kept: dict[str, tuple[str, int]] = {}
    for d, src in zip(("field", "studio"), srcs, strict=True):
        kept.update(write_fleurs(synth_corpus["root"], d, src))
    root = f"{s3_bucket}/run"
    cmd = ["pipeline", "run", "--local", "--format", "fleurs", *[a for s in srcs for a in ("--src", s)],
           "--root", root, "--pipeline-root", str(tmp_path / "kfp"),
           "--preset", "tiny", "--iterations", "1", "--shards", "2", "--no-lid",
           "--set", "train.max_update=4", "--train-set", "train.save_interval_updates=2",
           "--set", "train.log_interval=1", "--cluster-set", "mode=exact",
           "--set", "superb.tasks=none"]  # the probes: tests/test_pipeline_continue.py
    assert main(cmd) == 0
    out = capsys.readouterr().out
    run = RunLayout(root)
    assert run.serving.model.url in out and run.iteration(1).labels.url in out
    # quiet: a line per task with its seconds, kfp's JSON and faiss's loader lines only in the log
    assert "executor" not in out and "swigfaiss" not in out and "{" not in out, out
    for stage in ("prepare", "iter1 cluster", "iter1 merge", "iter1 train", "iter1 evaluate", "publish"):
        assert re.search(rf"^ok {re.escape(stage)}\s+\d+\.\d s", out, re.M), (stage, out)
    assert re.search(r"^ok iter1 train\s+\d+\.\d s  4 updates", out, re.M), out
    log = re.search(r"full log: (\S+\.log)", out).group(1)
    assert "Executing task" in open(log).read()
    # the corpus: every row of both releases (two sources: full URLs), one language code each,
    # the release's durations, the missing clip a reject with its reason
    manifest = run.corpus.read_manifest()
    assert {manifest.url_of(i): (manifest[i].lang, manifest[i].n_samples)
            for i in range(len(manifest))} == kept
    assert set(manifest.datasets) == {"fleurs"}
    rejects = dict(read_rejects(run.corpus.path("rejects.tsv")))
    assert set(rejects) == {storage.join(s, "en_us", "audio", "train", MISSING) for s in srcs}, rejects
    assert all("audio file not found" in why for why in rejects.values()), rejects
    # labels: one sequence per manifest utterance at 100 Hz (MFCC frames), from both shards
    labels = run.iteration(1).labels
    flat, offsets = labels.read()
    assert len(offsets) == len(manifest) + 1
    assert labels.info["label_rate"] == 100
    k = load_preset("tiny")["iterations"][0]["num_clusters"]
    assert flat.max() < k
    for i, e in enumerate(manifest.entries):
        frames = 1 + (e.n_samples - 400) // 160
        assert abs(int(offsets[i + 1] - offsets[i]) - frames) <= 1
    # the served model loads in stock transformers (from S3, via a local copy) with the tiny architecture
    reg = run.serving.registry()
    assert reg["model"] == run.serving.model.url and reg["iteration"] == 1
    # and its units index, fit on the served model's features at the preset's last clustering layer
    assert reg["units"]["layer"] == load_preset("tiny")["iterations"][2]["layer"]
    assert run.serving.units_index.is_committed() and run.serving.is_committed()
    local_model = tmp_path / "served"
    fs, path = storage.get_fs(reg["model"])
    fs.get(path.rstrip("/") + "/", str(local_model) + "/", recursive=True)
    hf = transformers.HubertModel.from_pretrained(str(local_model))
    assert hf.config.num_hidden_layers == load_preset("tiny")["model"]["num_layers"]
    assert run.iteration(1).train.info["step"] == 4
    assert run.iteration(1).eval.read_json("quality.json")["num_clusters"] > 0
    names = ("corpus", "index", "labels", "train", "eval", "serving")
    markers = _markers(run, names)
    ckpt_fs, ckpt_dir = storage.get_fs(run.iteration(1).train.path("checkpoints"))
    checkpoints = sorted(ckpt_fs.find(ckpt_dir))
    assert checkpoints

    # the same run again on the same root: no stage redoes its work (KFP's cache is off: each
    # stage decides), each says so; no marker is rewritten, no checkpoint added
    assert main(cmd) == 0
    out = capsys.readouterr().out
    ends = re.findall(r"^ok (\S+(?: \w+)?)\s+\d+\.\d s  (.*)$", out, re.M)
    stages = {"prepare", "iter1 cluster", "iter1 assign", "iter1 merge", "iter1 train", "iter1 evaluate",
              "publish"}
    assert {st for st, _ in ends} == stages, out
    assert all(fig.startswith("reused") for _, fig in ends), out
    assert _markers(run, names) == markers
    ckpt_fs.invalidate_cache()
    assert sorted(ckpt_fs.find(ckpt_dir)) == checkpoints

    # more updates on the same root: stops before any work, naming the setting and the choices
    assert main([*cmd, "--set", "train.max_update=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "max_update" in err[-1] and "--resume" in err[-1] and "--force" in err[-1], err
    assert "Traceback" not in "\n".join(err)
    # --resume: training continues from its checkpoint to the new number of updates; the stages
    # before it, whose settings did not change, are reused, each saying so
    assert main([*cmd, "--set", "train.max_update=6", "--resume"]) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "iter1 cluster", "iter1 merge"):
        assert re.search(rf"^ok {stage}\s+\d+\.\d s  reused", out, re.M), (stage, out)
    assert _markers(run, names[:3]) == {n: markers[n] for n in names[:3]}
    assert run.iteration(1).train.info["step"] == 6
    # what depends on the continued model is made again from it, never reused
    for stage in ("iter1 evaluate", "publish"):
        assert re.search(rf"^ok {stage}\s+\d+\.\d s", out, re.M), (stage, out)
        assert not re.search(rf"^ok {stage}\s+\d+\.\d s  reused", out, re.M), (stage, out)
    after = _markers(run, ("eval", "serving"))
    assert after["eval"] != markers["eval"] and after["serving"] != markers["serving"]
