"""``make demo``: the whole platform on one machine, end to end.

1. synthesise a small multilingual corpus with espeak-ng (``mhubert corpus synth``);
2. run the 3-iteration mHuBERT-147 pipeline locally through kfp.local with the ``tiny`` preset
   (``mhubert pipeline run --local``): manifest → MFCC k-means → labels → train → layer-L k-means → ...;
3. serve the final model with its LID head (``mhubert serve``) on 127.0.0.1 and query it once for
   embeddings and once for language identification;
4. print where everything is, the per-iteration pseudo-label quality, the LID accuracy and the
   ML-SUPERB-style probes (CER and LID accuracy of each iteration's model and of FBANK, at the tiny
   preset's demo budget: ``superb`` section).

Run: ``python -m pipelines.demo --root demo-output`` (``make demo``, or ``mhubert demo``). The
terminal shows one line per task (stage, iteration, seconds, its key figure) and a progress bar while
training; kfp's full log goes to a file under ``<root>/run/_kfp/`` whose path is printed. Re-running
reuses every stage whose settings did not change.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from mhubert import storage
from mhubert.artifacts import RunLayout
from mhubert.cli import main as mhubert
from pipelines.cli import parse_iterations


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _step(*argv: str) -> None:
    print("\n$ mhubert " + " ".join(argv), flush=True)
    rc = mhubert(list(argv))
    if rc != 0:
        sys.exit(rc)


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"demo: the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit("demo: the server did not become ready in time")


def _quality_table(run: RunLayout, iterations: Sequence[int]) -> list[tuple[int, dict]]:
    rows = []
    for n in iterations:
        ev = run.iteration(n).eval
        if storage.exists(ev.path(ev.QUALITY)):
            rows.append((n, ev.read_json(ev.QUALITY)))
    return rows


def _num(v: float | None, width: int = 8) -> str:
    return f"{v:{width}.3f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def probe_table(run: RunLayout, iterations: Sequence[int]) -> list[str]:
    """One row per iteration (and FBANK first, from the first iteration's probes): PNMI and unit LID
    of its labels, the LID head's held-out accuracy, and the ML-SUPERB-style probes' LID accuracy and
    CER. [] when no iteration has probes."""
    from mhubert.eval.iteration import read_probes, upstream_headline  # torch: not on `demo --help`

    rows, settings = [], None
    for n in iterations:
        ev = run.iteration(n).eval
        probes = read_probes(ev.superb_url)
        if not probes:
            continue
        if "fbank" in probes and not rows:
            rows.append(("FBANK", None, None, None, upstream_headline(probes["fbank"])))
        q = ev.read_json(ev.QUALITY) if storage.exists(ev.path(ev.QUALITY)) else {}
        lid_url = storage.join(ev.lid_eval_url, "metrics.json")
        head = storage.read_json(lid_url).get("accuracy") if storage.exists(lid_url) else None
        rows.append((f"iteration {n}", (q.get("language") or {}).get("pnmi"),
                     (q.get("unit_lid") or {}).get("cross_condition_accuracy"), head,
                     upstream_headline(probes.get("model", {}))))
        settings = settings or next(iter(probes.get("model", {}).values()), None)
    if not rows:
        return []
    out = []
    if settings:
        std = "" if settings.get("standard") else ", a non-standard amount: not comparable to the paper's"
        out.append(f"  {settings['task']} probes: {settings['train_per_lang']} of training audio per language"
                   f"{std}; {settings['steps']} updates; probe seed {settings['seed']}")
    out.append(f"  {'':<12}{'PNMI':>8}{'unit LID':>10}{'LID head':>10}{'probe LID':>11}{'probe CER':>11}")
    for name, pnmi, ulid, head, m in rows:
        out.append(f"  {name:<12}{_num(pnmi)}{_num(ulid, 10)}{_num(head, 10)}"
                   f"{_num(m.get('lid_accuracy'), 11)}{_num(m.get('cer'), 11)}")
    return out


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--root", default="demo-output", help="where everything goes (default demo-output)")
    ap.add_argument("--utterances", type=int, default=40, help="utterances per language and dataset")
    ap.add_argument("--iterations", default="1,2,3")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--no-serve", action="store_true", help="stop after the pipeline")
    ap.add_argument("--force", action="store_true", help="recompute every stage")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="passed to `pipeline run` (e.g. train.seed=2 clustering.seed=2 for another "
                         "training seed, superb.max_steps=500 for longer probes)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the whole platform on this machine: synthesise, pretrain, serve",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    root = os.path.abspath(args.root)
    corpus = os.path.join(root, "corpus-audio")
    run_root = os.path.join(root, "run")
    layout = RunLayout(run_root)

    if not storage.is_committed(corpus):
        _step("corpus", "synth", "--out", corpus, "--utterances", str(args.utterances))
    _step("pipeline", "run", "--local", "--preset", "tiny", "--corpus", corpus, "--root", run_root,
          "--iterations", args.iterations, "--shards", str(args.shards), *(["--force"] if args.force else []),
          *[a for o in args.overrides for a in ("--set", o)])
    t_pipeline = time.monotonic() - t0

    registry = layout.serving.registry()
    iterations = list(parse_iterations(args.iterations))
    print("\n=== language information in each iteration's labels ===")
    print("  PNMI: frame-level I(language; unit) / H(language) on the clustering sample.")
    print("  unit LID: language told from an utterance's units alone (bag of units + logistic regression),")
    print("  trained on one dataset (voices, recording conditions) and tested on the other.")
    rows = _quality_table(layout, iterations)
    nan = float("nan")
    for n, q in rows:
        lang, ulid = q.get("language") or {}, q.get("unit_lid") or {}
        print(f"  iteration {n}: PNMI(language) = {lang.get('pnmi', nan):.4f}  "
              f"unit LID across datasets = {ulid.get('cross_condition_accuracy') or nan:.3f} "
              f"(within: {ulid.get('cv_accuracy') or nan:.3f}, "
              f"majority class {ulid.get('chance') or nan:.3f})  "
              f"cluster perplexity = {q.get('perplexity', nan):.1f}")
    if len(rows) > 1 and rows[0][0] == 1:
        base = rows[0][1]
        for n, q in rows[1:]:
            p = (q.get("language") or {}).get("pnmi", nan) / (base.get("language") or {}).get("pnmi", nan)
            u0 = (base.get("unit_lid") or {}).get("cross_condition_accuracy") or nan
            u = (q.get("unit_lid") or {}).get("cross_condition_accuracy") or nan
            print(f"  iteration {n} vs MFCC labels: PNMI x{p:.2f}, unit LID across datasets x{u / u0:.2f}")
    lid_metrics = storage.join(layout.iteration(iterations[-1]).eval.lid_eval_url, "metrics.json")
    if storage.exists(lid_metrics):
        m = storage.read_json(lid_metrics)
        n_lang = len(m.get("per_language") or m.get("labels") or [None])
        print(f"\n=== LID head on the final model: held-out accuracy {m.get('accuracy'):.3f} "
              f"over {n_lang} languages (chance {1 / n_lang:.3f}) ===")

    table = probe_table(layout, iterations)
    if table:
        print("\n=== each iteration's model, probed as ML-SUPERB does (frozen features, CTC) ===")
        print("  PNMI and unit LID: of the iteration's labels (above); LID head: the held-out accuracy")
        print("  of a linear head on the model's pooled features; probe LID / CER: a CTC probe's language")
        print("  accuracy and character error rate (higher / lower is better).")
        print("\n".join(table))

    if not args.no_serve:
        port = free_port()
        cmd = [sys.executable, "-m", "mhubert", "serve", "--model", registry["model"], "--host", "127.0.0.1",
               "--port", str(port)]
        if registry.get("lid"):
            cmd += ["--lid", registry["lid"]]
        print("\n$ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            import httpx

            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc)
            man = layout.corpus.read_manifest()
            wav_url = man.url_of(len(man) - 1)
            audio = storage.read_bytes(wav_url)
            print(f"\n$ curl -F file=@{wav_url} '{url}/v1/embeddings?pooling=mean'")
            r = httpx.post(url + "/v1/embeddings", params={"pooling": "mean"},
                           files={"file": ("a.wav", audio, "audio/wav")}, timeout=60)
            body = r.json()
            show = json.dumps(body)[:400]
            print(f"HTTP {r.status_code}: {show}{'...' if len(show) == 400 else ''}")
            print(f"\n$ curl -F file=@{wav_url} {url}/v1/lid   (true language: {man.entries[-1].lang})")
            r = httpx.post(url + "/v1/lid", files={"file": ("a.wav", audio, "audio/wav")}, timeout=60)
            print(f"HTTP {r.status_code}: {json.dumps(r.json())}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print("\n=== where things are ===")
    print(f"  corpus audio      : {corpus}")
    print(f"  manifest + stats  : {layout.corpus.url}")
    for n in iterations:
        print(f"  iteration {n}       : {layout.iteration(n).url}  (clustering/ labels/ train/ eval/)")
    print(f"  served model      : {registry['model']}")
    print(f"  LID head          : {registry.get('lid')}")
    print(f"\npipeline took {t_pipeline / 60:.1f} min; demo total {(time.monotonic() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
