"""Helpers the component bodies import at run time (inside the image / the local venv).

Kept light: importing this module loads neither matplotlib nor torch (a component pays only for
what its stage uses), and :func:`mhubert` runs a library command in this process, not in a second
interpreter: a task costs kfp's executor start plus the stage itself.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from mhubert.artifacts import Artifact
from mhubert.errors import BadInput, MhubertError


class StageFailed(RuntimeError):
    """A library command failed; the message is its one-line cause."""


class StageBadInput(StageFailed):
    """A library command rejected its input (``mhubert.errors.BadInput``, exit code 2 at the CLI)."""


def mhubert(*args: object) -> int:
    """Run ``mhubert ARGS`` (the same command users run, :func:`mhubert.cli.dispatch`) in this
    process. A failure raises :class:`StageFailed` whose message names the command and its one-line
    cause (what a pipeline run shows as its last line)."""
    from mhubert.cli import dispatch

    argv = [str(a) for a in args]
    print("+ mhubert", " ".join(argv), flush=True)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc = dispatch(argv)
    except (MhubertError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise StageBadInput(f"mhubert {' '.join(argv[:2])}: {e}") from None
    finally:
        sys.stdout.flush()
    if rc:
        raise StageFailed(f"mhubert {' '.join(argv[:2])} failed (exit {rc})")
    return rc


def torchrun(args: Sequence[str], nproc: int, what: str) -> None:
    """``python -m torch.distributed.run ... -m mhubert.train ARGS`` here, its output streamed to the
    task log; a failure raises with the trainer's own one-line error (rank 0's ``error:`` line) and
    its real exit code, not torchrun's wrapper exception."""
    import re
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), "-m", "mhubert.train", *[str(a) for a in args]]
    print("+", " ".join(cmd), flush=True)
    error, exitcode, last_exc = None, None, None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()  # line by line: the run's progress bar follows the trainer's lines
            if m := re.search(r"mhubert\.train: error: (.+)$", line):
                error = m.group(1).strip()
            elif m := re.search(r"exitcode\s*:\s*(-?\d+)", line):
                exitcode = int(m.group(1))
            elif m := re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", line.strip()):
                if m.group(1) not in ("ChildFailedError",):
                    last_exc = f"{m.group(1)}: {m.group(2)}"
        rc = proc.wait()
    sys.stdout.flush()
    if rc == 0:
        return
    if error is not None or exitcode == 2:
        raise StageBadInput(f"{what}: {error or 'bad input (exit 2)'}")
    raise StageFailed(f"{what}: training exited with code {exitcode if exitcode is not None else rc}"
                      + (f" ({last_exc})" if last_exc else ""))


def figures(art: Artifact) -> dict[str, Any]:
    """The stage figures a committed artifact's marker records (``{}`` when it is not committed).

    Transitional: a marker of the older free-form ``_SUCCESS`` format (written by a stage not yet
    on :mod:`mhubert.artifacts`) is read as its figures."""
    if not art.is_committed():
        return {}
    try:
        return dict(art.info)
    except BadInput:
        from mhubert import storage

        legacy = storage.read_json(art.marker_url)
        return dict(legacy) if isinstance(legacy, dict) else {}


def png_html(title: str, png: bytes, extra: str = "") -> str:
    """A self-contained HTML page showing one PNG (what KFP's HTML viewer renders)."""
    b64 = base64.b64encode(png).decode()
    return (f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{b64}'/>{extra}</body></html>")


def json_table(obj: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v))}</td></tr>"
                   for k, v in obj.items())
    return f"<table border='1'>{rows}</table>"


def histogram_png(values: Sequence[float], title: str, xlabel: str, ylabel: str) -> bytes:
    """A bar chart of ``values`` by index, sorted descending (cluster sizes)."""
    import matplotlib.pyplot as plt

    from mhubert.plotting import figure_png  # selects the headless backend first

    fig, ax = plt.subplots(figsize=(8, 3.5))
    vals = sorted(values, reverse=True)
    ax.bar(range(len(vals)), vals, width=1.0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return figure_png(fig, dpi=90)


def log_metrics(metrics, values: dict) -> None:
    """Log every numeric value of ``values`` on a KFP Metrics artifact, and write them to its file
    (kfp.local's cache treats an artifact without a file as missing)."""
    for k, v in values.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)):
            metrics.log_metric(k, float(v))
    write_artifact_json(metrics)


def write_artifact_json(artifact) -> None:
    """Write an artifact's metadata as JSON to its path (metrics-only artifacts have no file)."""
    path = getattr(artifact, "path", None)
    if path:
        import os

        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(artifact.metadata, f)


def write_uri(artifact, uri: str, **metadata: Any) -> None:
    """Point a KFP output artifact at a URL of the run (its file holds the URL)."""
    artifact.metadata.update({"uri": uri, **metadata})
    with open(artifact.path, "w") as f:
        f.write(uri + "\n")
