"""``mhubert cluster`` end to end on audio (sample, fit, assign, merge, report into the iteration's
evaluation directory), reuse and --force, and the one-line errors."""

from __future__ import annotations

import json

import numpy as np
from helpers.clustering import make_corpus

from mhubert import storage
from mhubert.artifacts import EvalReport, Index, Labels, RunLayout
from mhubert.cli import main


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    root = str(tmp_path)
    murl = make_corpus(root)
    it = RunLayout(str(tmp_path / "run")).iteration(1)
    clu, labels, ev = it.clustering.url, it.labels.url, it.eval.url
    assert main(["cluster", "sample", "--manifest", murl, "--out", clu, "--budget-gb", "0.001",
                 "--quiet", "--preset", "tiny"]) == 0
    fit = ["cluster", "fit", "--out", clu, "--preset", "tiny", "--num-clusters", "5", "--mode", "exact"]
    assert main(fit) == 0
    for s in ("0", "1"):
        assert main(["cluster", "assign", "--manifest", murl, "--out", clu, "--labels", labels,
                     "--shard", s, "--num-shards", "2", "--quiet"]) == 0
    assert main(["cluster", "merge", "--labels", labels, "--num-shards", "2"]) == 0
    capsys.readouterr()
    assert main(["cluster", "report", "--out", ev, "--manifest", murl,      # clustering: beside eval/
                 "--labels", labels]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["label_method"] == "exact" and q["agreement_with_exact"] == 1.0
    flat, off = Labels(labels).read()
    assert len(off) == 7 and int(flat.max()) < 5
    assert Labels(labels).info["label_method"] == "exact"
    report = EvalReport(ev)
    assert report.read_json(EvalReport.QUALITY) == q and q["unit_lid"]["num_utterances"] == 6
    assert sum(report.read_json(EvalReport.SIZES)["counts"]) == q["num_rows"]
    assert report.read_bytes(EvalReport.SIZES_PLOT)[:4] == b"\x89PNG"
    assert not storage.exists(storage.join(clu, "quality.json"))
    # a rerun with the same settings is a no-op; other settings stop with a one-line error
    fp = Index(clu).fingerprint
    assert main(fit) == 0 and Index(clu).fingerprint == fp
    capsys.readouterr()
    assert main([*fit[:-4], "--num-clusters", "6", "--mode", "exact"]) == 2
    err = capsys.readouterr().err
    assert "num_clusters: 5 -> 6" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert main([*fit[:-4], "--num-clusters", "6", "--mode", "exact", "--force"]) == 0
    assert Index(clu).info["num_clusters"] == 6
    capsys.readouterr()
    assert main(["cluster", "assign", "--manifest", murl, "--out", clu, "--labels", labels,
                 "--shard", "3", "--num-shards", "2"]) == 2
    assert "--shard must be in [0, 1]" in capsys.readouterr().err
    assert main(["cluster", "fit", "--out", str(tmp_path / "nothing"), "--preset", "tiny"]) == 2
    assert "no committed clustering-sample" in capsys.readouterr().err
    assert main(["cluster", "assign", "--manifest", murl, "--index", str(tmp_path / "no.index"),
                 "--labels", str(tmp_path / "l2")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["cluster", "sample", "--manifest", murl, "--out", str(tmp_path / "c3"),
                 "--features", "hubert"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["cluster", "fit", "--out", clu, "--set", "clustering.label_method=fast"]) == 2
    assert "label_method" in capsys.readouterr().err
    np.testing.assert_array_equal(Labels(labels).read()[1], off)
