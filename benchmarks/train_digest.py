"""sha256 of the weights a fixed tiny training run ends with (6 updates, every source of randomness
on), to check that a change kept the trainer's numerics: run it before and after on the same machine
and compare. On the 2-core EPYC of docs/benchmarks.md, branch ``core`` (before the Trainer class)
gives 4c3ff9e7391bef7626951a1e48d0aeec15be3b07eb3e2c8f886faac852e833c7.

    PYTHONPATH=. python benchmarks/train_digest.py
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_train_corpus import make_toy_corpus  # noqa: E402

from mhubert.train import checkpoint as ckpt  # noqa: E402
from mhubert.train.run import RunArgs, train  # noqa: E402

SETS = ["model.num_layers=2", "data.max_tokens=32000", "data.max_sample_size=16000",
        "data.min_sample_size=16000", "data.num_workers=0", "train.log_interval=2",
        "train.max_update=6", "train.warmup_updates=2", "train.save_interval_updates=100",
        "model.dropout=0.1", "model.layerdrop=0.3", "model.dropout_input=0.1",
        "model.attention_dropout=0.1"]


def main() -> None:
    torch.set_num_threads(1)
    root = tempfile.mkdtemp()
    c = make_toy_corpus(root + "/toy", n=12)
    res = train(RunArgs(c["manifest"], c["labels"], root + "/run", preset="tiny", overrides=SETS))
    state = ckpt.load(ckpt.latest_url(root + "/run"))["model"]
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.contiguous().view(torch.uint8).numpy().tobytes())
    print(json.dumps({"weights_sha256": h.hexdigest(), "final_loss": res["final_loss"]}))


if __name__ == "__main__":
    main()
