"""Which layer's units carry the most language information? (the "tiny recipe" table in docs/benchmarks.md)

For a trained model (transformers directory or trainer checkpoint) and a manifest, k-means (faiss,
random starts, ``--seeds`` runs) on the layer-L features of ``--utterances`` random utterances, and
the frame PNMI(language) of the resulting units, next to the same for the 39-d MFCCs of iteration 1.
Use it to pick the layers of a new preset's iterations 2 and 3, or to compare training recipes.

    python benchmarks/probe_layers.py --manifest demo-output/run/corpus/manifest.tsv \
        --model demo-output/run/iter1/train/model --model demo-output/run/iter2/train/model
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from mhubert.clustering.quality import pnmi
from mhubert.corpus.manifest import Manifest
from mhubert.features.featurizer import Featurizer
from mhubert.features.spec import FeatureSpec


def probe(spec: FeatureSpec, manifest: Manifest, idx: np.ndarray, lang_ids: np.ndarray, k: int,
          seeds: int) -> list[float]:
    """PNMI(language) of k-means units over ``seeds`` runs."""
    fx = Featurizer(spec)
    feats = [f for _, batch in fx.iter_manifest(manifest, idx) for f in batch]
    x = np.ascontiguousarray(np.concatenate(feats), dtype=np.float32)
    frame_lang = np.repeat(lang_ids, [len(f) for f in feats])
    out = []
    for seed in range(seeds):
        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed)
        km.train(x)
        out.append(pnmi(frame_lang, km.index.search(x, 1)[1][:, 0].astype(np.int64)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--model", action="append", default=[], help="model URL (repeatable)")
    ap.add_argument("--utterances", type=int, default=400)
    ap.add_argument("--num-clusters", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--min-layer", type=int, default=1)
    args = ap.parse_args()

    man = Manifest.read(args.manifest)
    idx = np.sort(np.random.default_rng(0).choice(len(man), min(args.utterances, len(man)), replace=False))
    langs = np.array([man[int(i)].lang for i in idx])
    lang_ids = np.unique(langs, return_inverse=True)[1]
    print(f"{len(idx)} utterances, {len(set(langs))} languages, K={args.num_clusters}, {args.seeds} seeds")
    print("| features | PNMI(language) mean | per seed | s |\n|---|---|---|---|")

    def row(name: str, spec: FeatureSpec) -> None:
        t = time.perf_counter()
        r = probe(spec, man, idx, lang_ids, args.num_clusters, args.seeds)
        print(f"| {name} | {np.mean(r):.4f} | {' '.join(f'{v:.4f}' for v in r)} | "
              f"{time.perf_counter() - t:.0f} |", flush=True)

    row("MFCC (iteration 1 targets)", FeatureSpec(source="mfcc"))
    for model in args.model:
        from mhubert.model import load_model

        n_layers = len(load_model(model).layers)
        for layer in range(args.min_layer, n_layers + 1):
            spec = FeatureSpec(source="hubert", model=model, layer=layer, device="cpu")
            row(f"{model} layer {layer}", spec)


if __name__ == "__main__":
    main()
