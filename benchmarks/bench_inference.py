"""HuBERT-base inference latency: ours vs transformers vs torchaudio, same process, same weights.

    .venv/bin/python benchmarks/bench_inference.py [--seconds 10] [--batch 1 8] [--reps 3] [--compile]
        [--onnx] [--torch-int8] [--preset base|tiny]

``--onnx`` adds our ONNX export under ONNX Runtime (fp32 and dynamic int8: the ``onnx`` and
``onnx-int8`` serving backends); ``--torch-int8`` adds torch's dynamic int8 quantisation of the Linear
layers. The max |diff| against ours (fp32 torch) is printed for each.

Our model's weights are exported with ``save_hf`` and loaded by ``transformers.HubertModel``, so the
two compute the same function (checked below); ``torchaudio.models.hubert_base()`` has random
weights of the same architecture. Runs are interleaved (ours, transformers, torchaudio, ours, ...)
so that load from other processes hits all of them alike. Prints min / mean seconds per forward and
the ratios of the minima.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch
import torchaudio
import transformers

from mhubert.model import HubertConfig, HubertModel, save_hf


def timed(fn, x: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process); CPU time is steadier on a shared machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(x)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(ours)")
    ap.add_argument("--onnx", action="store_true", help="also time ONNX Runtime fp32 and int8")
    ap.add_argument("--torch-int8", action="store_true", help="also time torch dynamic int8 (Linear)")
    ap.add_argument("--preset", default="base", help="model size (tiny: a quick check of the script)")
    ap.add_argument("--layer", type=int, default=6,
                    help="also time layer-L features (clustering): ours stops there, transformers "
                         "runs every layer for output_hidden_states (0 to skip)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = HubertModel(HubertConfig.preset(args.preset)).eval()
    with tempfile.TemporaryDirectory() as d:
        save_hf(ours, d)
        hf = transformers.HubertModel.from_pretrained(d, attn_implementation="sdpa").eval()
    ta = torchaudio.models.hubert_base().eval() if args.preset == "base" else None

    def run_ours(x):
        return ours.hidden_states(x)[-1]

    def run_hf(x):
        return hf(x).last_hidden_state

    def run_ta(x):
        return ta(x)[0]

    def run_ours_layer(x):
        return ours.extract_layer(x, None, args.layer)[0]

    def run_hf_layer(x):
        return hf(x, output_hidden_states=True).hidden_states[args.layer]

    def run_ta_layer(x):
        return ta.extract_features(x, num_layers=args.layer)[0][-1]

    models = {"ours": run_ours, "transformers": run_hf}
    if ta is not None:
        models["torchaudio"] = run_ta
    if args.layer:
        models.update({f"ours L{args.layer}": run_ours_layer, f"transformers L{args.layer}": run_hf_layer})
        if ta is not None:
            models[f"torchaudio L{args.layer}"] = run_ta_layer
    tmp = tempfile.TemporaryDirectory()
    if args.onnx:
        import os

        from mhubert.model.onnx import export_onnx, open_session, quantize_int8

        path = export_onnx(ours, os.path.join(tmp.name, "m.onnx"))
        for name, p in (("ours onnx", path), ("ours onnx-int8",
                                               quantize_int8(path, os.path.join(tmp.name, "m8.onnx")))):
            sess = open_session(p, threads=args.threads)

            def run_onnx(x, sess=sess):
                lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
                return torch.from_numpy(sess.run(None, {"wav": x.numpy(), "lengths": lengths.numpy()})[-1])

            models[name] = run_onnx
    if args.torch_int8:
        q = torch.ao.quantization.quantize_dynamic(ours, {torch.nn.Linear}, dtype=torch.qint8)

        def run_q(x):
            return q.hidden_states(x)[-1]

        models["ours torch-int8"] = run_q
    if args.compile:
        compiled = torch.compile(ours)
        models["ours+compile"] = compiled

    n = int(args.seconds * 16000)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or ''}")
    with torch.inference_mode():
        x = torch.randn(1, n)
        base_out = run_ours(x)
        for k, fn in models.items():
            if " L" not in k and k != "ours" and not k.startswith("torchaudio"):
                print(f"max |{k} - ours| on one input: {(fn(x) - base_out).abs().max().item():.2e}")
        for b in args.batch:
            x = torch.randn(b, n)
            for fn in models.values():  # warm-up (and compile)
                fn(x)
            times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
            for _ in range(args.reps):
                for k, fn in models.items():
                    times[k].append(timed(fn, x))
            for k, ts in times.items():
                ref = times[f"ours L{args.layer}" if " L" in k else "ours"]
                wall, cpu = [w for w, _ in ts], [c for _, c in ts]
                print(f"batch {b} x {args.seconds:g} s  {k:17s} wall min {min(wall):6.3f} s  mean "
                      f"{sum(wall) / len(wall):6.3f} s  {b * args.seconds / min(wall):6.1f} audio-s/s  "
                      f"/ ours {min(wall) / min(w for w, _ in ref):4.2f}  |  CPU min {min(cpu):6.3f} s  "
                      f"/ ours {min(cpu) / min(c for _, c in ref):4.2f}")


if __name__ == "__main__":
    main()
