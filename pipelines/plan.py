"""``mhubert plan``: what a run will cost before booking the GPUs, per iteration.

    mhubert plan --manifest URL --preset base --nodes 4 --gpus-per-node 8 [--gpu h200]

For each iteration of the preset's schedule (with ``--set`` overrides, as ``pipeline run`` takes
them): updates; audio seen (updates x GPUs x ``data.max_tokens`` x ``train.update_freq``, an upper
bound: crop batching fills a batch up to ``max_tokens``), and how many passes over the corpus that is;
device-hours and wall time from a recorded training rate for the GPU kind (saying where the figure
comes from, or that there is none); label storage (frames x 2 bytes, uint16 labels at the
iteration's label rate); the clustering sample (``clustering.memory_budget_gb`` of float32 rows of
the iteration's feature dimension) against the frames the corpus has, i.e. how often the budget
repeats each frame; and the size of the k-means centroids.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

from mhubert.errors import BadInput

MFCC_DIM = 39  # 13 MFCC + deltas + delta-deltas (mhubert.features.mfcc)
# Training throughput per GPU kind, in audio-seconds per second of one device, for the base model.
RECORDED_RATES: dict[str, tuple[float, str]] = {
    "h200": (733.0, "HuBERT-base pretraining step, bf16, batch 11 x 250k samples on one H200 "
                    "(docs/benchmarks.md, performance anchors)"),
}


@dataclass
class IterationPlan:
    iteration: int
    features: str
    label_rate: int
    num_clusters: int
    updates: int
    samples_per_update: int
    audio_hours_seen: float
    corpus_passes: float
    device_hours: float | None
    wall_hours: float | None
    label_frames: int
    label_bytes: int
    feature_dim: int
    sample_rows: int
    sample_bytes: int
    sample_repeats: float
    index_bytes: int


def label_frames(n_samples: list[int], label_rate: int, sample_rate: int) -> int:
    """Frames of labels for utterances of ``n_samples`` at ``label_rate``: one per hop (within one
    frame per utterance of the exact MFCC window / conv-stack count)."""
    hop = sample_rate // label_rate
    return sum(max(0, n // hop) for n in n_samples)


def plan(manifest_url: str, preset: str, nodes: int, gpus_per_node: int, gpu: str | None = None,
         overrides: list[str] | None = None, iterations: tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    """The plan as a dict: ``{"corpus": {...}, "rate": {...}, "iterations": [IterationPlan...]}``."""
    from mhubert.artifacts import Manifest

    manifest = Manifest.read(manifest_url)
    if len(manifest) == 0:
        raise BadInput(f"{manifest_url} has no utterances")
    return plan_samples({"manifest": manifest_url, "languages": len(manifest.languages)},
                        [e.n_samples for e in manifest.entries], preset, nodes, gpus_per_node, gpu,
                        overrides, iterations)


def plan_samples(corpus: dict[str, Any], samples: list[int], preset: str, nodes: int, gpus_per_node: int,
                 gpu: str | None = None, overrides: list[str] | None = None,
                 iterations: tuple[int, ...] = (1, 2, 3), scale: float = 1.0) -> dict[str, Any]:
    """:func:`plan` on utterance lengths (16 kHz samples) rather than a manifest: ``corpus`` says what
    they are (``languages``, and how they were read). ``scale``: each length stands for that many
    utterances (a random sample of a large corpus): utterances, hours and label frames are scaled."""
    from mhubert.config import iteration_schedule, iteration_train_overrides, load_sections, route_overrides
    from mhubert.constants import SAMPLE_RATE
    from pipelines.preflight import TRAIN_SECTIONS, sections

    if nodes < 1 or gpus_per_node < 1:
        raise BadInput(f"--nodes and --gpus-per-node must be >= 1, got {nodes} and {gpus_per_node}")
    if not samples:
        raise BadInput(f"{corpus.get('manifest') or corpus.get('source') or 'the corpus'} has no utterances")
    corpus_hours = scale * sum(samples) / SAMPLE_RATE / 3600
    secs = sections()
    routed = route_overrides(overrides or [], secs)
    sched = iteration_schedule(preset)
    world = nodes * gpus_per_node
    kind = (gpu or "").lower() or None
    rate, source = RECORDED_RATES.get(kind, (None, None)) if kind else (None, None)
    if preset != "base":
        rate, source = None, None  # the recorded figures are for the base model
    clustering = load_sections(preset, {"clustering": secs["clustering"]},
                               [f"clustering.{kv}" for kv in routed["clustering"]])["clustering"]
    k_set = any(kv.split("=", 1)[0].strip() == "num_clusters" for kv in routed["clustering"])
    out = []
    for n in iterations:
        it = sched[n - 1]
        train_items = [f"{s}.{kv}" for s in TRAIN_SECTIONS for kv in routed[s]]
        items = iteration_train_overrides(preset, n, train_items)
        cfg = load_sections(preset, {s: secs[s] for s in TRAIN_SECTIONS}, items)
        updates = int(cfg["train"].max_update)
        per_update = int(cfg["data"].max_tokens) * world * int(cfg["train"].update_freq)
        seen_s = updates * per_update / SAMPLE_RATE
        device_h = seen_s / rate / 3600 if rate else None
        frames = round(scale * label_frames(samples, int(it["label_rate"]), SAMPLE_RATE))
        dim = MFCC_DIM if it["features"] == "mfcc" else int(cfg["model"].embed_dim)
        k = int(clustering.num_clusters if k_set else it["num_clusters"])  # a --set K wins, as in `cluster`
        rows = int(clustering.memory_budget_gb * 1e9 // (dim * 4))
        out.append(IterationPlan(
            iteration=n, features=it["features"], label_rate=int(it["label_rate"]), num_clusters=k,
            updates=updates, samples_per_update=per_update, audio_hours_seen=seen_s / 3600,
            corpus_passes=seen_s / 3600 / corpus_hours, device_hours=device_h,
            wall_hours=device_h / world if device_h is not None else None, label_frames=frames,
            label_bytes=frames * 2, feature_dim=dim, sample_rows=rows, sample_bytes=rows * dim * 4,
            sample_repeats=rows / frames if frames else 0.0, index_bytes=k * dim * 4))
    return {"corpus": {**corpus, "utterances": round(scale * len(samples)), "hours": corpus_hours},
            "devices": {"nodes": nodes, "gpus_per_node": gpus_per_node, "gpu": kind},
            "rate": {"audio_seconds_per_second_per_gpu": rate, "source": source},
            "iterations": [asdict(p) for p in out]}


def _size(b: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if b < 1000 or unit == "PB":
            return f"{b:,.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1000
    return ""


def _hours(h: float | None) -> str:
    if h is None:
        return "unknown"
    return f"{h:,.1f} h" if h < 48 else f"{h / 24:,.1f} days"


def _audio(h: float) -> str:
    return f"{h:,.1f} h" if h >= 1 else f"{h * 60:,.1f} min"


def render(p: dict[str, Any]) -> str:
    c, d, r = p["corpus"], p["devices"], p["rate"]
    audio = _audio(c["hours"])
    est = c.get("estimate")  # a folder or --src corpus: durations read before the import
    partial = bool(est) and est["sampled"] < est["files"]
    how = ""
    if est:
        which = (f"an estimate from a random sample of {est['sampled']:,} of {est['files']:,} audio files"
                 if partial else f"all {est['files']:,} audio files")
        how = f" ({which}, {est['range']} kept as prepare will)"
    lines = [f"corpus: {'~' if partial else ''}{c['utterances']:,} utterances, "
             f"{audio}, {c['languages']} languages{how}; "
             f"{d['nodes']} node(s) x {d['gpus_per_node']} GPU(s)" + (f" ({d['gpu']})" if d["gpu"] else "")]
    if r["audio_seconds_per_second_per_gpu"]:
        lines.append(f"training rate: {r['audio_seconds_per_second_per_gpu']:.0f} audio-s/s per GPU, "
                     f"recorded: {r['source']}")
    else:
        lines.append("training rate: no recorded figure for this GPU kind and preset (known: "
                     f"{', '.join(RECORDED_RATES)} for base): device-hours and wall time unknown")
    for it in p["iterations"]:
        lines.append(
            f"iteration {it['iteration']} ({it['features']}, {it['label_rate']} Hz labels, "
            f"K={it['num_clusters']}): "
            f"{it['updates']:,} updates x {it['samples_per_update'] / 16000:,.0f} s of audio = "
            f"<= {_audio(it['audio_hours_seen'])} seen ({it['corpus_passes']:,.1f} passes over the corpus); "
            f"{_hours(it['device_hours'])} device time, {_hours(it['wall_hours'])} wall; "
            f"labels {_size(it['label_bytes'])} ({it['label_frames']:,} frames x 2 B); "
            f"clustering sample {it['sample_rows']:,} rows x {it['feature_dim']} = "
            f"{_size(it['sample_bytes'])} "
            f"(each frame ~{it['sample_repeats']:,.1f}x); centroids {_size(it['index_bytes'])}")
    return "\n".join(lines)


def _plan(args: argparse.Namespace) -> int:
    from pipelines.cli import parse_iterations

    p = plan(args.manifest, args.preset, args.nodes, args.gpus_per_node, args.gpu, list(args.overrides),
             parse_iterations(args.iterations))
    print(json.dumps(p, indent=2) if args.json else render(p))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help="cost preview of a pretraining run (updates, audio, GPU-hours, "
                                           "storage), per iteration")
    p.add_argument("--manifest", required=True, help="corpus manifest URL (mhubert corpus manifest/import)")
    p.add_argument("--preset", default="base", help="base | tiny | a YAML URL (default base)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--gpu", default=None, help=f"GPU kind for recorded rates ({', '.join(RECORDED_RATES)})")
    p.add_argument("--iterations", default="1,2,3")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=_plan)
