"""What a person sees while a kfp.local run works: one line per task, a bar on long stages.

kfp.local prints everything (its executor JSON, each task's streamed output, the outputs of every
task) to ``sys.stdout`` of the process that calls the pipeline. :class:`QuietRun` swaps ``sys.stdout``
and ``sys.stderr`` for a writer that copies every byte to a log file and watches the lines for
kfp's ``Executing task`` / ``finished with status`` messages, then prints one line per task on the
terminal: stage, iteration, seconds and the stage's key figure (read from the run's artifacts).
Training shows a progress bar fed by the trainer's ``update N`` log lines. Colour only on a terminal.
The last stage error seen in the log (a component's one-line cause) is kept for the final message.
"""

from __future__ import annotations

import builtins
import io
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from mhubert.artifacts import RunLayout

ANSI = re.compile(r"\x1b\[[0-9;]*m")
START = re.compile(r"Executing task '?([\w.-]+)'?")
END = re.compile(r"Task '?([\w.-]+)'? finished with status (\w+)")
UPDATE = re.compile(r"\bupdate (\d+) \{")
CAUSE = re.compile(r"(?:^|\s)(?:components\._common\.)?(StageFailed|StageBadInput): (.+)$")
EXCEPTION = re.compile(r"^\s*(?:[\w.]+\.)?(\w*(?:Error|Exception|BadInput|StaleArtifact)): (.+)$")
STAGE_ERROR = re.compile(r"^\s*(mhubert(?:\.train)? [\w -]*?: error: .+)$")


def display_names(pipeline: Any) -> dict[str, str]:
    """kfp task key (``cluster-2``) -> our display name (``iter2-cluster``), from the pipeline spec."""
    from google.protobuf import json_format

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    out: dict[str, str] = {}
    dags = [spec.get("root", {}).get("dag", {})]
    dags += [c.get("dag", {}) for c in spec.get("components", {}).values()]
    for dag in dags:
        for key, task in (dag.get("tasks") or {}).items():
            out[key] = task.get("taskInfo", {}).get("name", key)
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _info(art: Any) -> dict[str, Any]:
    from components._common import figures

    try:
        return figures(art)
    except Exception:  # a figure is a courtesy: never let it break the run
        return {}


def key_figure(root: str, stage: str, iteration: int | None) -> str:
    """The one number a person wants after ``stage`` (from the run's committed artifacts)."""
    run = RunLayout(root)
    try:
        if stage == "prepare":
            stats = run.corpus.stats()
            total = stats.get("total", {})
            hours = float(total.get("hours") or 0.0)
            audio = f"{hours:,.1f} h" if hours >= 1 else f"{hours * 60:.1f} min"
            langs = len(stats.get("languages") or {})
            return f"{_fmt(total.get('utterances'))} utterances, {audio} of audio, {langs} languages"
        if iteration is None:
            if stage == "publish":
                return f"serving {run.serving.model.url}"
            return ""
        it = run.iteration(iteration)
        if stage == "cluster":
            info = _info(it.clustering.sample)
            frames, utts = info.get("num_frames"), info.get("num_utterances")
            if not frames:
                return ""
            text = f"sample of {_fmt(frames)} frames"
            copies = info.get("num_copies")
            if utts and copies and copies > utts:  # the budget repeats a small corpus: say so
                text += f" ({copies / utts:.0f}x repeats of {_fmt(utts)} utterances)"
            return text
        if stage == "assign":
            return ""
        if stage == "merge":
            info = _info(it.labels)
            parts = []
            if "num_frames" in info:
                parts.append(f"{_fmt(info['num_frames'])} labels at {info.get('label_rate', '?')} Hz")
            if "num_clusters" in info:
                parts.append(f"K={info['num_clusters']}")
            return ", ".join(parts)
        if stage == "train":
            info = _info(it.train)
            if "step" in info:
                loss = info.get("final_loss")
                return f"{_fmt(info['step'])} updates" + (f", loss {_fmt(loss)}" if loss is not None else "")
        if stage == "evaluate":
            parts = []
            try:
                q = it.eval.read_json(it.eval.QUALITY)
                pnmi = (q.get("language") or {}).get("pnmi")
                if pnmi is not None:
                    parts.append(f"PNMI(language) {pnmi:.3f}")
            except Exception:
                pass
            try:
                m = it.eval.lid.read_json("metrics.json")
                parts.append(f"LID accuracy {m['accuracy']:.3f}")
            except Exception:
                pass
            from mhubert.eval.iteration import read_probes, upstream_headline

            probe = upstream_headline(read_probes(it.eval.superb_url).get("model", {}))
            parts += [f"probe {k.replace('_', ' ')} {v:.3f}" for k, v in sorted(probe.items())]
            return ", ".join(parts)
    except Exception:
        return ""
    return ""


def _artifact(root: str, stage: str, iteration: int | None) -> Any:
    run = RunLayout(root)
    if stage == "prepare":
        return run.corpus
    if stage == "publish":
        return run.serving
    if iteration is None:
        return None
    it = run.iteration(iteration)
    # a label shard task keeps the merged labels when they were committed with its settings
    return {"cluster": it.clustering.index, "assign": it.labels, "merge": it.labels, "train": it.train,
            "evaluate": it.eval}.get(stage)


def reused(root: str, stage: str, iteration: int | None, started: float) -> bool:
    """Whether the stage kept a result committed before it started (its marker is older)."""
    import datetime

    art = _artifact(root, stage, iteration)
    try:
        created = art.marker(refresh=True).created if art is not None and art.is_committed() else ""
        return bool(created) and datetime.datetime.fromisoformat(created).timestamp() < started - 1.0
    except Exception:
        return False


class QuietRun(io.TextIOBase):
    """``with QuietRun(log_path, root, names, totals) as q: pipeline(...)``: the run's output goes to
    ``log_path``; the terminal gets a line per task (``verbose`` also copies everything there).

    The lines are watched in order on a thread of their own, never inside ``write``: the line that
    ends a task reads the run root for its figures, which on S3 waits on threads that log (fsspec's
    I/O loop, an in-process endpoint's server), while the writer (kfp's log handler) holds its lock.
    Leaving the context drains them."""

    def __init__(self, log_path: str, root: str, names: dict[str, str],
                 totals: Callable[[str, int | None], int | None] | None = None,
                 verbose: bool = False, terminal: IO[str] | None = None) -> None:
        super().__init__()
        self.log = open(log_path, "a", encoding="utf-8")
        self.root, self.names, self.totals, self.verbose = root, names, totals, verbose
        self.term = terminal or sys.__stdout__ or sys.stdout
        self.color = bool(getattr(self.term, "isatty", lambda: False)())
        self._buf = ""
        self._lock = threading.Lock()  # the buffer, written from kfp's threads
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._watcher: threading.Thread | None = None
        # ParallelFor runs several tasks of one name at once (the label shards): starts queue up
        self._started: dict[str, list[tuple[float, float]]] = {}
        self._bar: Any = None
        self.cause: str | None = None
        self.bad_input = False
        self.failed: str | None = None
        self.tasks = 0

    # -- the file interface kfp writes to --------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            self.log.write(ANSI.sub("", s))  # kfp colours its lines: none in the file
            if self.verbose:
                self.term.write(s)
            *lines, self._buf = (self._buf + s).split("\n")
            for line in lines:
                self._lines.put(ANSI.sub("", line))
        return len(s)

    def _watch(self) -> None:
        while (line := self._lines.get()) is not None:
            try:
                self._line(line)
            except Exception as e:  # noqa: BLE001 (a courtesy line must not stop the watching)
                self.log.write(f"(quiet run: could not watch {line!r}: {e})\n")

    def flush(self) -> None:
        self.log.flush()
        self.term.flush()

    def isatty(self) -> bool:
        return False

    # -- watching the lines ------------------------------------------------------------------------
    @staticmethod
    def _stage(display: str) -> tuple[str, int | None]:
        m = re.match(r"iter(\d)-(\w+)", display)
        return (m.group(2), int(m.group(1))) if m else (display, None)

    def _line(self, line: str) -> None:
        if m := START.search(line):
            key = m.group(1)
            self._started.setdefault(key, []).append((time.monotonic(), time.time()))
            stage, n = self._stage(self.names.get(key, key))
            total = self.totals(stage, n) if self.totals else None
            if total and not self.verbose:
                from tqdm import tqdm

                self._close_bar()
                self._bar = tqdm(total=total, desc=f"  {self._label(stage, n)}", unit="upd", file=self.term,
                                 leave=False, dynamic_ncols=True, disable=not self.color)
            return
        if m := END.search(line):
            self._end(m.group(1), m.group(2))
            return
        if self._bar is not None and (m := UPDATE.search(line)):
            self._bar.update(max(0, int(m.group(1)) - self._bar.n))
            return
        if m := CAUSE.search(line):
            self.cause, self.bad_input = m.group(2).strip(), m.group(1) == "StageBadInput"
        elif m := STAGE_ERROR.match(line):
            self.cause = m.group(1).strip()
        elif (m := EXCEPTION.match(line)) and not line.startswith("RuntimeError: Task"):
            self.cause = self.cause or f"{m.group(1)}: {m.group(2).strip()}"

    @staticmethod
    def _label(stage: str, n: int | None) -> str:
        return f"iter{n} {stage}" if n is not None else stage

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _end(self, key: str, status: str) -> None:
        self._close_bar()
        queue = self._started.get(key) or [(time.monotonic(), time.time())]
        t0, wall0 = queue.pop(0)
        secs = max(0.0, time.monotonic() - t0)
        stage, n = self._stage(self.names.get(key, key))
        if stage.startswith("for-loop") or stage.startswith("condition"):
            return
        ok = status.upper() == "SUCCESS"
        figure = key_figure(self.root, stage, n) if ok else ""
        if ok and reused(self.root, stage, n, wall0):
            figure = "reused" + (f", {figure}" if figure else "")
        if self.color:
            mark = "\x1b[32m✓\x1b[0m" if ok else "\x1b[31m✗\x1b[0m"
        else:
            mark = "ok" if ok else "FAILED"
        if not ok:
            self.failed = self._label(stage, n)
        self.tasks += 1
        self.term.write(f"{mark:>2} {self._label(stage, n):<16} {secs:7.1f} s  {figure}\n")
        self.term.flush()

    # -- context -----------------------------------------------------------------------------------
    def __enter__(self) -> QuietRun:
        self._saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self  # type: ignore[assignment]
        # kfp.local swaps the root logger's handlers per task and restores the previous ones (also
        # while parallel shard tasks still log): those must write here too, not to the terminal
        root = logging.getLogger()
        self._handlers = root.handlers[:]
        root.handlers = [logging.StreamHandler(self)]
        self._print = builtins.print  # kfp.local's indented print is not thread-safe: it can stay
        self._watcher = threading.Thread(target=self._watch, name="quiet-run", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        logging.getLogger().handlers = self._handlers
        builtins.print = self._print
        sys.stdout, sys.stderr = self._saved
        if self._buf:
            self._lines.put(ANSI.sub("", self._buf))
            self.log.write("\n")
        self._lines.put(None)
        if self._watcher is not None:
            self._watcher.join()
        self._close_bar()
        self.log.close()
