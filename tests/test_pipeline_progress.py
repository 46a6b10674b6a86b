"""The quiet run's line watcher, fed the lines kfp.local 2.17 writes (copied from its
task_dispatcher/logging_utils formats, colour codes included)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from pipelines.progress import QuietRun

CYAN, GREEN, RED, RESET = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def _kfp(task: str, status: str = "SUCCESS", body: str = "") -> str:
    color = GREEN if status == "SUCCESS" else RED
    return (f"09:04:54.398 - INFO - Executing task {CYAN}'{task}'{RESET}\n"
            "09:04:54.398 - INFO - Streamed logs:\n\n"
            "    [KFP Executor 2026-12-01 09:04:54,641 INFO]: Got executor_input:\n"
            '    {\n        "inputs": {}\n    }\n'
            + body +
            f"09:04:55.001 - INFO - Task {CYAN}'{task}'{RESET} finished with status {color}{status}{RESET}\n")


def test_one_line_per_task_everything_else_in_the_log(tmp_path):
    term = io.StringIO()
    log = tmp_path / "run.log"
    names = {"prepare": "prepare", "cluster": "iter1-cluster", "for-loop-2": "for-loop-2"}
    with QuietRun(str(log), str(tmp_path / "root"), names, terminal=term) as q:
        sys.stdout.write(_kfp("prepare"))
        print(_kfp("cluster"), end="")
        logging.getLogger("x").warning("a warning from the parent")
    out = term.getvalue().splitlines()
    assert len(out) == 2 and q.tasks == 2, out
    assert out[0].startswith("ok prepare") and out[1].startswith("ok iter1 cluster")
    assert " s" in out[0] and "\x1b" not in term.getvalue()  # no colour off a terminal
    text = log.read_text()
    assert "Got executor_input" in text and "a warning from the parent" in text
    assert "\x1b[" not in text  # no colour codes in the file
    assert sys.stdout is not q and sys.stderr is not q  # restored


def test_failure_keeps_the_stage_cause(tmp_path):
    term = io.StringIO()
    body = ("    Traceback (most recent call last):\n"
            '      File "x.py", line 1, in <module>\n'
            "    components._common.StageBadInput: mhubert cluster sample: manifest m.tsv lists no "
            "utterance\n")
    with QuietRun(str(tmp_path / "run.log"), str(tmp_path), {"cluster": "iter1-cluster"}, terminal=term) as q:
        sys.stdout.write(_kfp("cluster", "FAILURE", body))
    assert q.failed == "iter1 cluster" and q.bad_input
    assert q.cause == "mhubert cluster sample: manifest m.tsv lists no utterance"
    assert term.getvalue().startswith("FAILED iter1 cluster")


def test_training_failure_cause_from_torchrun(tmp_path):
    body = ("    mhubert.train: error: train.max_updates is not an option\n"
            "    torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            "    components._common.StageBadInput: iter1 train: train.max_updates is not an option\n")
    with QuietRun(str(tmp_path / "run.log"), str(tmp_path), {"train": "iter1-train"},
                  terminal=io.StringIO()) as q:
        sys.stdout.write(_kfp("train", "FAILURE", body))
    assert q.cause == "iter1 train: train.max_updates is not an option" and q.bad_input


def test_parallel_shards_of_one_name_each_get_their_line(tmp_path):
    """kfp.local runs a ParallelFor's tasks concurrently under one name: two starts, two ends."""
    term = io.StringIO()
    start = f"INFO - Executing task {CYAN}'assign-shard'{RESET}\n"
    end = f"INFO - Task {CYAN}'assign-shard'{RESET} finished with status {GREEN}SUCCESS{RESET}\n"
    with QuietRun(str(tmp_path / "run.log"), str(tmp_path), {"assign-shard": "iter1-assign"},
                  terminal=term) as q:
        sys.stdout.write(start + start + end + end)
    lines = term.getvalue().splitlines()
    assert q.tasks == 2 and len(lines) == 2 and all(x.startswith("ok iter1 assign") for x in lines)
    assert all(float(x.split()[3]) >= 0 for x in lines), lines


@pytest.mark.timeout(60)
def test_a_task_end_with_its_figures_on_s3_does_not_deadlock_a_logging_endpoint(s3_bucket, tmp_path):
    """Ending a task reads the run root for its figures; on S3 that waits on other threads that log
    (fsspec's I/O loop; here moto's server thread logging each request, as in the pipeline's S3
    test) while kfp's log handler, the writer, holds its lock: this hung before."""
    from kfp.local import logging_utils

    term = io.StringIO()
    end = f"Task {CYAN}'prepare'{RESET} finished with status {GREEN}SUCCESS{RESET}"
    with QuietRun(str(tmp_path / "run.log"), f"{s3_bucket}/run", {"prepare": "prepare"}, terminal=term) as q:
        with logging_utils.local_logger_context():  # kfp's own handler, as around each task
            logging.info(end)
            logging.warning("a warning from the parent")
    assert q.tasks == 1 and term.getvalue().startswith("ok prepare"), term.getvalue()
    assert "a warning from the parent" in (tmp_path / "run.log").read_text()
