"""The HuBERT pretraining loop: one entry point for a single process, torchrun and a PyTorchJob.

Distributed settings come from the environment torchrun and the Training Operator set (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); without them it runs as one
process. gloo on CPU, NCCL on GPU, DDP, bf16 autocast on GPU, AdamW with linear warmup/decay,
gradient clipping and accumulation. Checkpoints (``mhubert.train.checkpoint``) are written by rank 0
every ``save_interval_updates`` and the run resumes from ``latest`` on start; at the end it writes
``loss.png``, the transformers directory ``model/`` and ``_SUCCESS`` (a re-launch is then a no-op).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mhubert import storage
from mhubert.errors import BadInput
from mhubert.plotting import figure_png
from mhubert.train import checkpoint as ckpt
from mhubert.train.config import load_configs
from mhubert.train.schedule import linear_schedule

log = logging.getLogger(__name__)


@dataclass
class RunArgs:
    """What ``python -m mhubert.train`` takes (all paths are fsspec URLs)."""

    manifest: str
    labels: str
    out: str
    preset: str = "base"
    init_from: str | None = None
    overrides: list[str] = field(default_factory=list)
    num_classes: int | None = None     # default: num_clusters from the labels' _SUCCESS


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed() -> Dist:
    """Join the process group described by the environment (single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise BadInput(f"WORLD_SIZE={world} but {var} is not set")
        store, rank, world = next(dist.rendezvous("env://"))
        # torchrun keeps its store across restarts: without a per-attempt prefix a restarted rank
        # can read a dead peer's address from the previous attempt and fail to connect
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group("nccl" if cuda else "gloo",
                                store=dist.PrefixStore(f"mhubert/attempt_{attempt}", store),
                                rank=rank, world_size=world)
    return Dist(rank, world, local_rank, device)


def shutdown(d: Dist) -> None:
    """Flush, wait for every rank, then leave the group (avoids aborts at interpreter exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer's bytes (replicas in sync <=> equal digests)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _gather(d: Dist, obj: Any) -> list[Any]:
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _maybe_die_for_test(step: int, d: Dist) -> None:
    """Fault injection for the restart test: the last rank SIGKILLs itself once at a given step."""
    at = os.environ.get("MHUBERT_TEST_KILL_AT_STEP")
    marker = os.environ.get("MHUBERT_TEST_KILL_MARKER")
    if at and marker and int(at) == step and d.rank == d.world_size - 1 \
            and not os.path.exists(marker):
        open(marker, "w").close()
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _batches(planner, epoch: int, index: int) -> Iterator[tuple[dict, tuple[int, int]]]:
    """Batches from position ``(epoch, index)`` on, forever; yields ``(batch, next position)``."""
    while True:
        n, loader = planner.loader(epoch, index)
        for batch in loader:
            index = batch["index"] + 1
            yield batch, ((epoch, index) if index < n else (epoch + 1, 0))
        epoch, index = epoch + 1, 0


def _init_encoder(model, url: str) -> None:
    from mhubert.model import load_model

    src = load_model(url)
    try:
        missing, unexpected = model.encoder.load_state_dict(src.state_dict(), strict=False)
    except RuntimeError as e:  # shape mismatches
        raise BadInput(f"--init-from {url} does not match the model config: {e}") from e
    if missing or unexpected:
        raise BadInput(f"--init-from {url} does not match the model config: missing "
                       f"{missing[:5]}, unexpected {unexpected[:5]} (set model.* to its architecture)")


def _plot(records: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], label="loss (masked CE + penalty)")
    ax.set_xlabel("update")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["acc_m"] for r in records], color="tab:orange", label="masked accuracy")
    ax2.set_ylabel("masked accuracy")
    fig.legend(loc="upper right")
    return figure_png(fig)


class _Meter:
    """Sums over a log interval, kept on the device (no host sync per step)."""

    KEYS = ("loss", "batches", "correct_m", "count_m", "correct_u", "count_u", "samples", "gnorm",
            "updates")

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.KEYS), dtype=torch.float64, device=self.device)
        self.t0 = time.perf_counter()

    def add(self, **values) -> None:
        for k, v in values.items():
            v = v.detach().to(torch.float64) if torch.is_tensor(v) else float(v)
            self.sums[self.KEYS.index(k)] += v

    def summary(self, d: Dist) -> dict[str, float]:
        s = self.sums.clone()
        if d.enabled:
            dist.all_reduce(s)
        v = dict(zip(self.KEYS, s.tolist(), strict=True))  # summed over ranks
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return {"loss": v["loss"] / max(v["batches"], 1.0),
                "acc_m": v["correct_m"] / max(v["count_m"], 1.0),
                "acc_u": v["correct_u"] / max(v["count_u"], 1.0),
                "gnorm": v["gnorm"] / max(v["updates"], 1.0),
                "audio_s_per_s": v["samples"] / 16000.0 / elapsed}


def _write_log(out: str, records: list[dict]) -> None:
    storage.atomic_write_text(storage.join(out, "log.jsonl"),
                              "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _read_log(out: str, up_to: int) -> list[dict]:
    url = storage.join(out, "log.jsonl")
    if not storage.exists(url):
        return []
    rows = [json.loads(line) for line in storage.read_text(url).splitlines() if line.strip()]
    return [r for r in rows if r.get("step", 0) <= up_to]


def train(args: RunArgs, stop_at: int | None = None) -> dict[str, Any]:
    """Run (or resume, or skip if finished) a pretraining run. ``stop_at`` (tests, debugging) ends the
    run after that many updates with a checkpoint, as an interruption would. Returns a summary."""
    from mhubert.corpus.manifest import Manifest
    from mhubert.data.dataset import EpochPlanner, LabeledAudio, read_label_dir
    from mhubert.model import HubertPretrainModel

    cfgs = load_configs(args.preset, args.overrides)
    mcfg, dcfg, tcfg = cfgs["model"], cfgs["data"], cfgs["train"]
    if storage.is_committed(args.out):
        log.info("%s is finished (_SUCCESS exists): nothing to do", args.out)
        return {"skipped": True, **storage.read_json(storage.join(args.out, storage.SUCCESS))}
    d = init_distributed()
    try:
        return _train(args, d, mcfg, dcfg, tcfg, stop_at, Manifest, EpochPlanner, LabeledAudio,
                      read_label_dir, HubertPretrainModel)
    finally:
        shutdown(d)


def _train(args, d, mcfg, dcfg, tcfg, stop_at, Manifest, EpochPlanner, LabeledAudio,
           read_label_dir, HubertPretrainModel) -> dict[str, Any]:
    _, _, info = read_label_dir(args.labels)
    num_classes = int(args.num_classes or info.get("num_clusters") or 0)
    if num_classes < 1:
        raise BadInput(f"{args.labels}/_SUCCESS has no num_clusters; pass --num-classes")
    data = LabeledAudio(Manifest.read(args.manifest), args.labels, dcfg)
    planner = EpochPlanner(data, tcfg.seed, d.rank, d.world_size)

    seed_all(tcfg.seed)  # identical initial weights on every rank
    model = HubertPretrainModel(mcfg, num_classes).to(d.device)
    cuda = d.device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
                            weight_decay=tcfg.weight_decay,
                            **({"fused": True} if cuda else {"foreach": True}))
    sched = linear_schedule(opt, tcfg.warmup_updates, tcfg.max_update)

    step, position, records = 0, (1, 0), []
    latest = ckpt.latest_url(args.out)
    if latest:
        state = ckpt.load(latest)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise BadInput(f"{latest} does not match the configured model (changed model.* or "
                           f"num_classes?): {e}") from e
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, position = int(state["step"]), tuple(state["position"])
        old_world = int(state.get("world_size", d.world_size))
        if old_world != d.world_size:  # keep the epoch's global batch position
            position = (position[0], position[1] * old_world // d.world_size)
        rngs = state.get("rng") or []
        if len(rngs) == d.world_size:
            ckpt.set_rng_state(rngs[d.rank])
        else:  # resumed on a different world size: fresh, distinct per-rank streams
            seed_all(tcfg.seed + 1000 * step + d.rank)
        records = _read_log(args.out, step) if d.rank == 0 else []
        log.info("resumed from %s (update %d, epoch %d, batch %d)", latest, step, *position)
    else:
        if args.init_from:
            _init_encoder(model, args.init_from)
        seed_all(tcfg.seed + d.rank)  # distinct dropout/masking streams per rank

    net: torch.nn.Module = model
    ddp = None
    if d.enabled:
        net = ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.device.index] if cuda else None,
            find_unused_parameters=getattr(mcfg, "layerdrop", 0.0) > 0)
    if tcfg.compile:
        net = torch.compile(net)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and tcfg.bf16
                else contextlib.nullcontext())

    def save(at: int) -> None:
        rngs = _gather(d, ckpt.rng_state())
        if d.rank == 0:
            ckpt.save(args.out, at, {
                "step": at, "position": list(position), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rngs,
                "model_config": mcfg.to_dict(), "num_classes": num_classes,
                "label_rate": data.label_rate, "world_size": d.world_size,
                "config": {"data": dataclasses.asdict(dcfg), "train": dataclasses.asdict(tcfg)}})
        d.barrier()

    end = tcfg.max_update if stop_at is None else min(stop_at, tcfg.max_update)
    bar = None
    if d.rank == 0 and sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(total=end, initial=step, unit="upd", dynamic_ncols=True)
    meter = _Meter(d.device)
    stream = _batches(planner, *position)
    model.train()
    last_saved = step
    while step < end:
        for micro in range(tcfg.update_freq):
            batch, position = next(stream)
            sync = micro == tcfg.update_freq - 1 or ddp is None
            with (contextlib.nullcontext() if sync else ddp.no_sync()), autocast:
                wav = batch["wav"].to(d.device, non_blocking=True)
                lengths = batch["lengths"]
                lengths = lengths.to(d.device, non_blocking=True) if lengths is not None else None
                labels = batch["labels"].to(d.device, non_blocking=True)
                out = net(wav, lengths, labels, data.label_rate)
                loss = out["loss"] / tcfg.update_freq
                loss.backward()
            meter.add(loss=out["loss"], batches=1, correct_m=out["correct_m"], count_m=out["count_m"],
                      correct_u=out["correct_u"], count_u=out["count_u"], samples=batch["n_samples"])
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip_norm)
        # a non-finite gradient (e.g. a bad utterance) skips the update rather than poisoning Adam
        if torch.isfinite(gnorm):
            opt.step()
        else:
            log.warning("update %d: non-finite gradient norm, update skipped", step + 1)
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        meter.add(gnorm=gnorm, updates=1)
        if bar is not None:
            bar.update(1)
        if step % tcfg.log_interval == 0 or step == end:
            rec = {"step": step, "epoch": position[0], "lr": opt.param_groups[0]["lr"],
                   "mem_gb": _memory_gb(d.device), **meter.summary(d)}
            meter.reset()
            if d.rank == 0:
                records.append(rec)
                _write_log(args.out, records)
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", acc_m=f"{rec['acc_m']:.3f}")
                else:
                    log.info("update %d %s", step, json.dumps(rec))
        if step % tcfg.save_interval_updates == 0 or step == end:
            save(step)
            last_saved = step
        _maybe_die_for_test(step, d)
    if bar is not None:
        bar.close()
    if step > last_saved:
        save(step)
    digests = _gather(d, param_digest(model))
    summary = {"step": step, "max_update": tcfg.max_update, "num_classes": num_classes,
               "label_rate": data.label_rate, "world_size": d.world_size, "param_sha256": digests,
               "final_loss": records[-1]["loss"] if records else None}
    if step < tcfg.max_update:
        return {"finished": False, **summary}
    if d.rank == 0:
        from mhubert.model import save_hf

        if records:
            storage.atomic_write(storage.join(args.out, "loss.png"), _plot(records))
        save_hf(model.encoder, storage.join(args.out, "model"))
        storage.write_marker(args.out, summary)
    d.barrier()
    return {"finished": True, **summary}
