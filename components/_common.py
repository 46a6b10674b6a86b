"""Helpers the component bodies import at run time (inside the image / the local venv)."""

from __future__ import annotations

import base64
import html
import json
import subprocess
import sys
from collections.abc import Sequence

from mhubert.plotting import figure_png


class StageFailed(RuntimeError):
    """A library command exited non-zero; the message holds its last output lines."""


def mhubert(*args: object, env: dict[str, str] | None = None) -> str:
    """Run ``python -m mhubert ARGS`` (the same CLI users run) and return its output.

    Output streams to the task log as it comes; a failure raises :class:`StageFailed` naming the
    command, with the last lines of its output.
    """
    cmd = [sys.executable, "-m", "mhubert", *[str(a) for a in args]]
    print("+", " ".join(cmd), flush=True)
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line)
        rc = proc.wait()
    sys.stdout.flush()
    if rc != 0:
        tail = "".join(lines[-15:]).strip()
        raise StageFailed(f"mhubert {' '.join(map(str, args[:2]))} failed (exit {rc}):\n{tail}")
    return "".join(lines)


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
