"""One HuBERT pretraining step: ours (mhubert.model + AdamW) vs torchaudio's hubert_pretrain_base.

Both models get the same batch (``--batch`` x ``--samples`` waveforms, K=1000 labels at 50 Hz) and
the same optimizer (AdamW 5e-4, (0.9, 0.98), 1e-6, wd 0.01; fused on CUDA) and clipping (10). The
torchaudio step follows its recipe (examples/hubert): CE summed over masked frames + 10 x feature
penalty x masked frames, divided by the masked frame count. Steps alternate between the two models
and the median time is reported, with audio-seconds/s, TFLOP/s (FlopCounterMode on one step), MFU
against ``--peak-tflops`` (or a measured fp32 GEMM peak on CPU) and the GPU-hours one mHuBERT-147
iteration would take at that rate (2M updates x 32 GPUs x 2.8M samples).

GPU:  python benchmarks/bench_train_step.py --device cuda --batch 11 --samples 250000 --bf16 \
        --peak-tflops 989   [--compile]
CPU:  python benchmarks/bench_train_step.py --device cpu --batch 2 --samples 32000
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

SR = 16000
PAPER_AUDIO_SECONDS = 2_000_000 * 32 * 2_800_000 / SR   # one iteration: updates x GPUs x samples


def torchaudio_hubert_loss(logit_m: torch.Tensor, logit_u: torch.Tensor | None,
                           feature_penalty: torch.Tensor) -> torch.Tensor:
    """The torchaudio recipe's loss, normalised per masked frame: the positive class is index 0 of
    torchaudio's logits, the unmasked term has weight 0, the feature penalty weight 10."""
    n = logit_m.shape[0]
    target = torch.zeros(n, dtype=torch.long, device=logit_m.device)
    loss = F.cross_entropy(logit_m.float(), target, reduction="sum") + 10.0 * feature_penalty * n
    return loss / max(n, 1)


def make_step(model, forward, device, compile_: bool, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=0.01,
                            **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    fwd = torch.compile(forward) if compile_ else forward
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())

    def step() -> None:
        with amp:
            loss = fwd()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device) -> float:
    sync(device)
    t = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - t


def step_flops(step) -> float:
    with FlopCounterMode(display=False) as fc:
        step()
    return float(fc.get_total_flops())


def gemm_peak_tflops(device: torch.device, n: int = 2048, bf16: bool = False) -> float:
    """Measured dense matmul throughput (the reachable peak for MFU on CPU)."""
    dt = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    a @ b
    sync(device)
    t = time.perf_counter()
    reps = 5
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--samples", type=int, default=32000)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model (after 1 warm-up)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak for MFU (default: measured GEMM peak)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from torchaudio.models import hubert_pretrain_base

    from mhubert.model import HubertConfig, HubertPretrainModel

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    wav = torch.randn(args.batch, args.samples, device=device)
    frames = (args.samples - 400) // 320 + 1
    labels = torch.randint(0, args.num_classes, (args.batch, frames), device=device)

    ours = HubertPretrainModel(HubertConfig.preset("base"), args.num_classes).to(device).train()
    anchor = hubert_pretrain_base(num_classes=args.num_classes).to(device).train()
    steps = {
        "mhubert": make_step(ours, lambda: ours.loss(ours(wav, None, labels, 50))["loss"], device,
                             args.compile, args.bf16),
        "torchaudio": make_step(anchor, lambda: torchaudio_hubert_loss(*anchor(wav, labels)), device,
                                args.compile, args.bf16),
    }
    flops = {k: step_flops(s) for k, s in steps.items()}   # also the warm-up step
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for k, s in steps.items():
            times[k].append(timed(s, device))
    peak = args.peak_tflops or gemm_peak_tflops(device, bf16=args.bf16)
    audio_s = args.batch * args.samples / SR
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name} ({torch.get_num_threads()} threads), batch {args.batch} x {args.samples} "
          f"samples ({audio_s:.1f} s audio), bf16={args.bf16}, compile={args.compile}, "
          f"peak {peak:.2f} TFLOP/s ({'given' if args.peak_tflops else 'measured GEMM'})")
    rows = {}
    for k in steps:
        t = statistics.median(times[k])
        tflops = flops[k] / t / 1e12
        rows[k] = audio_s / t
        hours = PAPER_AUDIO_SECONDS / rows[k] / 3600
        print(f"{k:>10}: {t:.3f} s/step  {rows[k]:8.1f} audio-s/s  {flops[k] / 1e12:.3f} TFLOP/step  "
              f"{tflops:.3f} TFLOP/s  MFU {100 * tflops / peak:.1f}%  "
              f"one mHuBERT-147 iteration: {hours:,.0f} device-hours")
    print(f"speed ratio mhubert / torchaudio: {rows['mhubert'] / rows['torchaudio']:.2f}x")


if __name__ == "__main__":
    main()
