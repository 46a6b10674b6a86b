"""Helpers the components share: CLI failures become one clear error; metrics keep numbers only."""

from __future__ import annotations

import pytest

from components._common import StageFailed, log_metrics, mhubert


def test_cli_failure_names_command_and_reason(tmp_path):
    with pytest.raises(StageFailed, match=r"mhubert corpus manifest failed \(exit 2\)[\s\S]*not found"):
        mhubert("corpus", "manifest", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))


def test_log_metrics_numbers_only(tmp_path):
    import json

    class M:
        def __init__(self):
            self.metadata = {}
            self.path = str(tmp_path / "a" / "metrics")

        def log_metric(self, k, v):
            self.metadata[k] = v

    m = M()
    log_metrics(m, {"a": 1, "b": 2.5, "c": "x", "d": None, "e": True, "f": [1]})
    assert m.metadata == {"a": 1.0, "b": 2.5, "e": 1.0}
    # the file lets kfp.local's cache find the artifact
    assert json.loads(open(m.path).read()) == m.metadata
