"""The approximate serving backends' errors on a trained model: ``onnx`` (fp32) and ``onnx-int8`` vs torch.

The backends are the ones ``mhubert serve --backend onnx|onnx-int8`` builds (``api.backends.make_backend``:
``mhubert.model.onnx.export_onnx``, plus ``quantize_int8`` for int8; ``mhubert model export --format
onnx[-int8]`` writes the same two graphs). Over held-out utterances of a corpus, in padded batches whose
sizes and lengths differ from the export's traced example, it reports against the torch backend:

- max |diff| of every hidden state over valid frames (fp32 ONNX target: <= 1e-4);
- cosine of the mean-pooled embeddings per layer (min, mean over utterances; int8 target >= 0.99) and the
  mean per-frame cosine;
- LID top-1 agreement (int8 target >= 98 %): a head fit as the pipeline's evaluate stage does
  (``mhubert.lid.train.train_lid`` on the same model) on utterances disjoint from the evaluated ones,
  applied as the service does (``mean_pool`` of every hidden state, then the head); or ``--lid DIR``;
- unit agreement per frame (int8 target >= 95 %): an index fit as ``publish`` does (``mhubert cluster
  sample --features hubert`` + ``mhubert cluster fit`` on the torch features of the preset's last-iteration
  layer, with its K) on the same fit utterances, then labelled as the service does
  (``ClusterIndex.label(method="auto")``: OPQ, then the coarse quantizer's top-1 through HNSW); or
  ``--index``.

``--variants`` adds int8 graphs quantised otherwise from the same fp32 export (every MatMul, as
``onnx-int8`` did before it kept the feature projection fp32; per-channel, 7-bit or uint8 weights of
every MatMul; the projection and the first transformer layer, or the FFN's output Linear, kept in fp32),
to measure what helps when a target is missed; they are ONNX Runtime ``quantize_dynamic`` options, not
serving backends.

    python benchmarks/backend_errors.py --model RUN --preset tiny --work /tmp/be-tiny --json out.json
    python benchmarks/backend_errors.py --model MODEL_DIR --manifest CORPUS/manifest.tsv --preset base \
        --work /tmp/be-base --eval-per-lang 5 --fit-per-lang 12 --variants \
        --cluster-set clustering.memory_budget_gb=0.07

Besides the plain cosine it reports the centred one (embeddings minus torch's mean over the evaluated
utterances) and |error| / spread: a model whose layers give nearly the same vector for every utterance
meets the plain cosine while its LID and units are noise (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from api.backends import make_backend
from mhubert import storage
from mhubert.artifacts import Index, Manifest, RunLayout
from mhubert.audio import load
from mhubert.clustering.index import load as load_index
from mhubert.config import iteration_schedule
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput
from mhubert.lid.head import load_head, mean_pool
from mhubert.lid.train import LidTrainConfig, train_lid
from mhubert.model import load_model
from mhubert.model.onnx import export_onnx, fp32_nodes, open_session

THRESHOLDS = {"onnx_max_abs": 1e-4, "int8_cosine": 0.99, "int8_lid": 0.98, "int8_units": 0.95}


def resolve(model: str, manifest: str) -> tuple[str, str]:
    """A run root stands for its served model (``serving/model``) and its corpus manifest."""
    run = RunLayout(model)
    if storage.exists(storage.join(run.serving.model.url, "config.json")):
        model, manifest = run.serving.model.url, manifest or run.corpus.manifest_url
    if not manifest:
        raise BadInput("--manifest is required unless --model is a run root")
    return model, manifest


def split_manifest(manifest: Manifest, eval_per_lang: int, fit_per_lang: int, seed: int
                   ) -> tuple[list[int], list[int]]:
    """Disjoint (eval, fit) utterance indices: per language, shuffled, first the eval ones."""
    rng = np.random.default_rng(seed)
    langs = np.asarray([e.lang for e in manifest])
    ev: list[int] = []
    fit: list[int] = []
    for lang in sorted(set(langs.tolist())):
        idx = np.flatnonzero(langs == lang)
        rng.shuffle(idx)
        ev += idx[:eval_per_lang].tolist()
        fit += idx[eval_per_lang: eval_per_lang + fit_per_lang].tolist()
    return ev, sorted(fit)


def subset(manifest: Manifest, idx: list[int], url: str) -> str:
    Manifest(manifest.root, [manifest[i] for i in idx]).write(url)
    return url


def mhubert_cli(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "mhubert", *map(str, args)], check=True)


def fit_units(model_uri: str, manifest_url: str, out: str, preset: str, layer: int, k: int,
              overrides: list[str]) -> str:
    """The units index as ``publish`` fits it (same commands and options, ``overrides`` being its
    ``cluster_overrides``) on ``manifest_url``."""
    sets = [a for o in overrides for a in ("--set", o)]
    opts = ["--preset", preset, "--num-clusters", k, "--quiet", *sets, "--force"]
    mhubert_cli("cluster", "sample", "--manifest", manifest_url, "--out", out, "--features", "hubert",
                "--model", model_uri, "--layer", layer, *opts)
    mhubert_cli("cluster", "fit", "--out", out, *opts)
    return out


class VariantBackend:
    """An int8 graph quantised with other ``quantize_dynamic`` options (``--variants`` only)."""

    def __init__(self, name: str, fp32_path: str, threads: int, **options) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        self.name = name
        dst = fp32_path.replace(".onnx", f".{name}.onnx")
        options.setdefault("weight_type", QuantType.QInt8)
        quantize_dynamic(fp32_path, dst, op_types_to_quantize=["MatMul", "Gemm"], **options)
        self.session = open_session(dst, threads=threads)
        self.names = [o.name for o in self.session.get_outputs()]

    def hidden_states(self, wav, lengths, top):
        outs = self.session.run(self.names[: top + 1], {"wav": wav.numpy(), "lengths": lengths.numpy()})
        return [torch.from_numpy(o) for o in outs]


def variant_backends(model, threads: int, tmp: str) -> list[VariantBackend]:
    import onnx
    from onnxruntime.quantization import QuantType

    path = export_onnx(model, os.path.join(tmp, "model.onnx"))
    nodes = [n for n in onnx.load(path).graph.node if n.op_type in ("MatMul", "Gemm")]
    # node names follow the traced module paths: /feature_proj/MatMul (the projection after the conv
    # front end, which itself is Conv and never quantised), /layers.N/...; onnx-int8 itself keeps
    # fp32_nodes (the projection) in fp32, so "the projection kept fp32" is the onnx-int8 row
    proj = fp32_nodes(path)
    first = [n.name for n in nodes if n.name.startswith("/layers.0/")]
    # reduce_range: 7-bit weights, against the u8s8 saturation of AVX2/AVX-512 CPUs without VNNI (ONNX
    # Runtime's quantisation docs); QUInt8 weights: the u8u8 kernels, no such saturation
    out = [VariantBackend("int8-every-matmul", path, threads),   # onnx-int8 before it kept proj fp32
           VariantBackend("int8-reduce-range", path, threads, reduce_range=True),
           VariantBackend("int8-per-channel-reduce-range", path, threads, per_channel=True,
                          reduce_range=True),
           VariantBackend("uint8-weights", path, threads, weight_type=QuantType.QUInt8),
           VariantBackend("int8-per-channel", path, threads, per_channel=True)]
    if first:
        out.append(VariantBackend("int8-fp32-proj-layer0", path, threads, nodes_to_exclude=proj + first))
    # the FFN's second Linear reads GELU outputs, the most outlier-heavy activations a per-tensor uint8
    # scale has to cover; keeping it fp32 costs a third of the encoder's Linear FLOPs
    ffn2 = [n.name for n in nodes if "/feed_forward/output_dense/" in n.name]
    if ffn2:
        out.append(VariantBackend("int8-fp32-ffn-out", path, threads, nodes_to_exclude=ffn2))
        out.append(VariantBackend("int8-fp32-ffn-out-reduce-range", path, threads, nodes_to_exclude=ffn2,
                                  reduce_range=True))
    return out


@dataclass
class Acc:
    """Running per-backend, per-layer statistics against torch."""

    layers: int
    max_abs: np.ndarray = field(init=False)
    frame_cos_sum: np.ndarray = field(init=False)
    frames: int = 0
    pooled: list = field(default_factory=list)   # (L+1, D) per utterance
    lid: list = field(default_factory=list)
    units: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.max_abs = np.zeros(self.layers)
        self.frame_cos_sum = np.zeros(self.layers)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    manifest = Manifest.read(args.manifest)
    ev_idx, fit_idx = split_manifest(manifest, args.eval_per_lang, args.fit_per_lang, args.seed)
    fit_url = subset(manifest, fit_idx, os.path.join(args.work, "fit.tsv"))
    model = load_model(args.model).eval()
    cfg = model.cfg
    last = iteration_schedule(args.preset)[-1]
    t0 = time.perf_counter()
    lid_dir = args.lid
    if not lid_dir:
        lid_dir = os.path.join(args.work, "lid")
        train_lid(args.model, fit_url, lid_dir, LidTrainConfig(valid_fraction=0.0), on_change="force",
                  progress=False)
    head, labels = load_head(lid_dir)
    layer = args.units_layer if args.units_layer >= 0 else int(last["layer"])
    k = args.num_clusters or int(last["num_clusters"])
    index_dir = args.index or fit_units(args.model, fit_url, os.path.join(args.work, "units"), args.preset,
                                        layer, k, args.cluster_set)
    art = Index(index_dir)
    ci = load_index(art.index_url, art.centroids_url)
    fit_s = time.perf_counter() - t0

    cpu = torch.device("cpu")
    names = ["torch", "onnx", "onnx-int8"]
    tmp = tempfile.mkdtemp(prefix="backend-errors-")
    backends = {n: make_backend(n, model, cpu, threads=args.threads) for n in names}
    if args.variants:
        for v in variant_backends(model, args.threads, tmp):
            backends[v.name] = v
    n_h = cfg.num_layers + 1
    acc = {n: Acc(n_h) for n in backends}
    lang_true: list[str] = []
    batch_lengths: list[list[int]] = []
    t0 = time.perf_counter()
    order = list(ev_idx)
    for start in range(0, len(order), args.batch):
        idx = order[start: start + args.batch]
        wavs = [load(manifest.url_of(i), SAMPLE_RATE, normalize=True)[: int(args.max_seconds * SAMPLE_RATE)]
                for i in idx]
        lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.long)
        wav = torch.zeros(len(wavs), int(lengths.max()))
        for j, w in enumerate(wavs):
            wav[j, : w.numel()] = w
        frames = model.frame_lengths(lengths)
        batch_lengths.append(lengths.tolist())
        lang_true += [manifest[i].lang for i in idx]
        ref = None
        for n, b in backends.items():
            hidden = [h.float() for h in b.hidden_states(wav, lengths, cfg.num_layers)]
            a = acc[n]
            with torch.inference_mode():
                pooled = mean_pool(hidden, frames)
                a.lid += head(pooled).argmax(dim=-1).tolist()
            a.pooled += list(pooled.numpy())
            x = torch.cat([hidden[layer][j, :f] for j, f in enumerate(frames.tolist())]).numpy()
            a.units.append(ci.label(np.ascontiguousarray(x, dtype=np.float32), method="auto"))
            if ref is None:
                ref = hidden
                continue
            for li in range(n_h):
                for j, f in enumerate(frames.tolist()):
                    h, r = hidden[li][j, :f], ref[li][j, :f]
                    a.max_abs[li] = max(a.max_abs[li], float((h - r).abs().max()))
                    a.frame_cos_sum[li] += float(torch.nn.functional.cosine_similarity(h, r, dim=-1).sum())
            a.frames += int(frames.sum())
        print(f"  batch {start // args.batch + 1}/{-(-len(order) // args.batch)} lengths {lengths.tolist()}",
              flush=True)
    eval_s = time.perf_counter() - t0

    ref = acc["torch"]
    ref_units = np.concatenate(ref.units)
    lid_acc = float(np.mean([labels[p] == t for p, t in zip(ref.lid, lang_true, strict=True)]))
    rows = {}
    for n in list(backends)[1:]:
        a = acc[n]
        p, r = np.stack(a.pooled), np.stack(ref.pooled)  # (N, L+1, D)
        cos = (p * r).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(r, axis=-1) + 1e-12)  # (N, L+1)
        # the same after removing torch's mean embedding over the evaluated utterances: what tells
        # utterances apart (a near-constant common component makes the plain cosine look perfect)
        mu = r.mean(axis=0, keepdims=True)
        pc, rc = p - mu, r - mu
        ccos = (pc * rc).sum(-1) / (np.linalg.norm(pc, axis=-1) * np.linalg.norm(rc, axis=-1) + 1e-12)
        spread = np.linalg.norm(p - r, axis=-1).mean(0) / (np.linalg.norm(rc, axis=-1).mean(0) + 1e-12)
        rows[n] = {
            "max_abs": a.max_abs.tolist(),
            "max_abs_all": float(a.max_abs.max()),
            "pooled_cosine_min": cos.min(axis=0).tolist(),
            "pooled_cosine_mean": cos.mean(axis=0).tolist(),
            "centred_cosine_min": ccos.min(axis=0).tolist(),
            "centred_cosine_mean": ccos.mean(axis=0).tolist(),
            "error_over_spread": spread.tolist(),
            "frame_cosine_mean": (a.frame_cos_sum / a.frames / 1.0).tolist() if a.frames else [],
            "lid_agreement": float(np.mean(np.asarray(a.lid) == np.asarray(ref.lid))),
            "lid_accuracy": float(np.mean([labels[q] == t for q, t in zip(a.lid, lang_true, strict=True)])),
            "unit_agreement": float(np.mean(np.concatenate(a.units) == ref_units)),
        }
    rf = cfg.receptive_field
    n_export = max(4 * rf, 8000)
    return {
        "model": args.model, "manifest": args.manifest, "preset": args.preset,
        "num_layers": cfg.num_layers, "dim": cfg.embed_dim,
        "eval_utterances": len(ev_idx),
        "eval_seconds": float(sum(sum(b) for b in batch_lengths) / SAMPLE_RATE),
        "languages": sorted(set(lang_true)), "fit_utterances": len(fit_idx), "batch": args.batch,
        "batch_lengths": batch_lengths, "export_example_lengths": [n_export, n_export - 3 * rf // 2],
        "lid_head": lid_dir, "lid_accuracy_torch": lid_acc,
        "units": {"index": index_dir, "layer": layer, "num_clusters": int(ci.num_clusters),
                  "frames": int(ref_units.size)},
        "threads": args.threads, "fit_s": round(fit_s, 1), "eval_s": round(eval_s, 1),
        "load_average": os.getloadavg(), "backends": rows, "thresholds": THRESHOLDS,
    }


def print_table(res: dict) -> None:
    u = res["units"]
    print(f"\n{res['model']}: {res['num_layers']} layers x {res['dim']}; {res['eval_utterances']} utterances "
          f"({res['eval_seconds']:.0f} s, {len(res['languages'])} languages) in padded batches of "
          f"{res['batch']}; LID head accuracy (torch) {res['lid_accuracy_torch']:.3f}; units: layer "
          f"{u['layer']}, K={u['num_clusters']}, {u['frames']} frames")
    print("\n| backend | max abs diff (all layers) | pooled cosine min / mean, last layer | "
          f"units layer {u['layer']} | LID top-1 agreement | unit agreement |")
    print("|---|---|---|---|---|---|")
    last, ul = res["num_layers"], u["layer"]
    for n, r in res["backends"].items():
        print(f"| {n} | {r['max_abs_all']:.2e} | {r['pooled_cosine_min'][last]:.5f} / "
              f"{r['pooled_cosine_mean'][last]:.5f} | {r['pooled_cosine_min'][ul]:.5f} / "
              f"{r['pooled_cosine_mean'][ul]:.5f} | {100 * r['lid_agreement']:.1f} % | "
              f"{100 * r['unit_agreement']:.2f} % |")
    print("\nper layer (max abs diff; pooled cosine min / mean; mean frame cosine; centred pooled cosine "
          "min / mean; |error| / |embedding - mean embedding|):")
    for n, r in res["backends"].items():
        print(f"  {n}:")
        for li in range(res["num_layers"] + 1):
            print(f"    h{li:<2d} {r['max_abs'][li]:.2e}  {r['pooled_cosine_min'][li]:.5f} / "
                  f"{r['pooled_cosine_mean'][li]:.5f}  {r['frame_cosine_mean'][li]:.5f}  "
                  f"{r['centred_cosine_min'][li]:.4f} / {r['centred_cosine_mean'][li]:.4f}  "
                  f"{r['error_over_spread'][li]:.3f}")
    t, o, q = res["thresholds"], res["backends"]["onnx"], res["backends"]["onnx-int8"]
    lid_layers_min = min(q["pooled_cosine_min"])
    checks = [("fp32 ONNX max abs diff <= 1e-4", o["max_abs_all"] <= t["onnx_max_abs"],
               f"{o['max_abs_all']:.2e}"),
              ("int8 pooled cosine >= 0.99 (every layer)", lid_layers_min >= t["int8_cosine"],
               f"{lid_layers_min:.5f}"),
              ("int8 LID top-1 agreement >= 98 %", q["lid_agreement"] >= t["int8_lid"],
               f"{100 * q['lid_agreement']:.1f} %"),
              ("int8 unit agreement >= 95 %", q["unit_agreement"] >= t["int8_units"],
               f"{100 * q['unit_agreement']:.2f} %")]
    print()
    for name, ok, value in checks:
        print(f"  {'met   ' if ok else 'MISSED'} {name}: {value}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True,
                    help="trained model (transformers dir or trainer .pt), or a run root (its served model)")
    ap.add_argument("--manifest", default="",
                    help="corpus manifest, several languages (default with a run root: its corpus)")
    ap.add_argument("--preset", default="base",
                    help="preset whose last iteration gives the units layer and K")
    ap.add_argument("--work", required=True, help="local directory for the LID head and units index")
    ap.add_argument("--lid", default="", help="use this LID head instead of fitting one")
    ap.add_argument("--index", default="", help="use this units Index directory instead of fitting one")
    ap.add_argument("--units-layer", type=int, default=-1, help="default: the preset's last iteration's")
    ap.add_argument("--num-clusters", type=int, default=0, help="default: the preset's last iteration's")
    ap.add_argument("--cluster-set", action="append", default=[], metavar="KEY=VALUE",
                    help="clustering override (publish's cluster_overrides); with the base preset on a "
                    "small corpus pass clustering.memory_budget_gb=<the sample's size>, else the "
                    "sampler repeats utterances up to its 850 GB budget")
    ap.add_argument("--eval-per-lang", type=int, default=10, help="evaluated utterances per language")
    ap.add_argument("--fit-per-lang", type=int, default=30, help="utterances per language the head and "
                    "index are fit on (disjoint from the evaluated ones)")
    ap.add_argument("--batch", type=int, default=4, help="utterances per padded batch")
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", action="store_true", help="also measure other int8 quantisation options")
    ap.add_argument("--json", default="", help="write the figures here")
    args = ap.parse_args(argv)
    args.model, args.manifest = resolve(args.model, args.manifest)
    res = run(args)
    print_table(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
