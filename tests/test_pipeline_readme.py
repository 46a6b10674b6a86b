"""README's "Train on your own data" commands, run as written on a small corpus laid out like the
example (the full pipeline run itself is the suite's one kfp.local run, tests/test_pipeline_s3.py;
here the README's run command line is checked with --dry-run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from mhubert.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    text = README.read_text()
    m = re.search(r"<!-- own-data:begin -->\s*```bash\n(.*?)```\s*<!-- own-data:end -->", text, re.S)
    assert m, "README lost its 'Train on your own data' block"
    return [line.split("  #")[0].strip() for line in m.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def own_corpus(tmp_path, monkeypatch):
    """my-corpus/interviews/<lang>/*.wav in the working directory, like the README's example."""
    rng = np.random.default_rng(0)
    for lang in ("sw", "en"):
        d = tmp_path / "my-corpus" / "interviews" / lang
        d.mkdir(parents=True)
        for i in range(1, 4):
            t = np.arange(48000) / 16000
            x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
            sf.write(str(d / f"{i:04d}.wav"), x.astype(np.float32), 16000, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_own_data_commands_run(own_corpus, capsys):
    cmds = _commands()
    kinds = [c.split()[1] if c.startswith("mhubert") else c.split()[0] for c in cmds]
    assert kinds == ["corpus", "pipeline", "pipeline", "plan", "serve", "curl", "curl", "curl", "curl"], cmds
    tiny = yaml.safe_load((README.parent / "mhubert" / "presets" / "tiny.yaml").read_text())
    tiny_layers = tiny["model"]["num_layers"]
    for cmd in cmds:
        argv = shlex.split(cmd)
        if argv[0] == "curl":
            form = next(a for a in argv if a.startswith("file=@"))
            assert (own_corpus / form[len("file=@"):]).exists(), cmd
            for layer in re.findall(r"layer=(\d+)", cmd):
                assert int(layer) <= tiny_layers, f"{cmd}: the tiny model has layers 0-{tiny_layers}"
            continue
        assert argv[0] == "mhubert"
        if argv[1] == "serve":
            args = build_parser().parse_args(argv[1:])  # runs a server: only its arguments here
            assert args.model_uri == "my-run/serving"   # the bundle: model, LID head and units index
            continue
        if argv[1] == "pipeline" and "--dry-run" not in argv:
            assert f"{cmd} --dry-run" in cmds, "the dry run must check the very command the README runs"
            continue
        assert main(argv[1:]) == 0, (cmd, capsys.readouterr().err)
        out = capsys.readouterr().out
        if argv[1] == "corpus":
            assert '"utterances": 6' in out and '"languages": ["en", "sw"]' in out
        if argv[1] == "pipeline":
            assert "nothing was run" in out and "train.max_update=50" in out
        if argv[1] == "plan":
            assert out.startswith("corpus: 6 utterances") and "recorded: HuBERT-base" in out
