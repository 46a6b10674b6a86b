"""The HuBERT pretraining loop as a :class:`Trainer`: one object for a single process, torchrun and a
Kubeflow job.

DDP, bf16 autocast on GPU, AdamW with linear warmup/decay, gradient clipping and accumulation.
The state that makes a resumed run equal an uninterrupted one (:meth:`Trainer.state_dict`): the
update count, the data position ``(epoch, batch)``, model/optimizer/scheduler, every rank's RNG
states and the world size. Checkpoints are published by rank 0 through a
:class:`~mhubert.train.saver.RetryingWriter` (a failed write is retried while training continues);
SIGTERM (:mod:`mhubert.train.preempt`) makes every rank stop after the same update and write one
checkpoint. Callbacks (:mod:`mhubert.train.callbacks`) watch the loop; they never change it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from mhubert.artifacts import TrainRun
from mhubert.data.dataset import EpochPlanner, LabeledAudio
from mhubert.errors import BadInput
from mhubert.model import HubertPretrainModel, load_model, save_hf
from mhubert.train import checkpoint as ckpt
from mhubert.train.callbacks import Callback, CallbackList
from mhubert.train.config import Recipe
from mhubert.train.dist import Dist, param_digest, seed_all
from mhubert.train.logs import Meter, RunLog, memory_gb
from mhubert.train.preempt import StopRequest
from mhubert.train.saver import RetryingWriter
from mhubert.train.schedule import linear_schedule

log = logging.getLogger(__name__)

STOP_BUDGET_S = 20.0      # time to write the preemption checkpoint (Kubernetes' grace is 30 s)
FINAL_BUDGET_S = 300.0    # time to write the last checkpoint of a run before failing
# agreeing on a stop is a collective whose result the host reads: on a GPU that is a device sync,
# so it runs every few updates there (every rank checks at the same updates, so all stop together)
STOP_CHECK_UPDATES_CUDA = 8


def batches(planner: EpochPlanner, epoch: int, index: int) -> Iterator[tuple[dict, tuple[int, int]]]:
    """Batches from position ``(epoch, index)`` on, forever; yields ``(batch, next position)``."""
    while True:
        n, loader = planner.loader(epoch, index)
        for batch in loader:
            index = batch["index"] + 1
            yield batch, ((epoch, index) if index < n else (epoch + 1, 0))
        epoch, index = epoch + 1, 0


class Trainer:
    """Pretrains ``HubertPretrainModel`` on ``data`` into ``run``.

    Build it, optionally :meth:`load_state_dict` (or :meth:`resume`), then :meth:`fit`;
    :meth:`export` writes the loss curve and the transformers model of a finished run.
    """

    def __init__(self, recipe: Recipe, data: LabeledAudio, num_classes: int, dist: Dist,
                 run: TrainRun, callbacks: list[Callback] | None = None,
                 provenance: dict[str, Any] | None = None, stop: StopRequest | None = None):
        self.recipe, self.data, self.num_classes, self.dist, self.run = \
            recipe, data, num_classes, dist, run
        self.provenance = dict(provenance or {})   # fingerprint, settings, inputs of the run
        self.callbacks = CallbackList(callbacks or [])
        self.stop = stop or StopRequest()
        tcfg = recipe.train
        self.planner = EpochPlanner(data, tcfg.seed, dist.rank, dist.world_size)
        seed_all(tcfg.seed)  # identical initial weights on every rank
        self.model = HubertPretrainModel(recipe.model, num_classes).to(dist.device)
        cuda = dist.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tcfg.lr, betas=tuple(tcfg.betas), eps=tcfg.eps,
            weight_decay=tcfg.weight_decay, **({"fused": True} if cuda else {"foreach": True}))
        self.scheduler = linear_schedule(self.optimizer, tcfg.warmup_updates, tcfg.max_update)
        self.num_updates = 0
        self.position: tuple[int, int] = (1, 0)
        self.log_records = RunLog(run)
        self.store = ckpt.CheckpointStore(run)
        self.writer = RetryingWriter(self.store)
        self.meter = Meter(dist.device)
        self.preempted = False
        self.resumed_from: str | None = None
        self._net: torch.nn.Module | None = None
        self._ddp: torch.nn.parallel.DistributedDataParallel | None = None

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (a collective: every rank's RNG state is gathered)."""
        rngs = self.dist.gather(ckpt.rng_state())
        return {"step": self.num_updates, "position": list(self.position),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rngs,
                "world_size": self.dist.world_size, "model_config": self.recipe.model.to_dict(),
                "num_classes": self.num_classes, "label_rate": self.data.label_rate,
                "config": self.recipe.to_dict(), "fingerprint": self.provenance.get("fingerprint")}

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        d, tcfg = self.dist, self.recipe.train
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise BadInput(f"{where} does not match the configured model (changed model.* or "
                           f"num_classes?): {e}") from e
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.num_updates = int(state["step"])
        position = tuple(state["position"])
        old_world = int(state.get("world_size", d.world_size))
        if old_world != d.world_size:  # keep the epoch's global batch position
            position = (position[0], position[1] * old_world // d.world_size)
        self.position = (int(position[0]), int(position[1]))
        rngs = state.get("rng") or []
        if len(rngs) == d.world_size:
            ckpt.set_rng_state(rngs[d.rank])
        else:  # resumed on a different world size: fresh, distinct per-rank streams
            seed_all(tcfg.seed + 1000 * self.num_updates + d.rank)

    def resume(self) -> bool:
        """Load the newest checkpoint that verifies (see :class:`CheckpointStore`); True if any."""
        found = self.store.load_latest()
        if found is None:
            return False
        url, state = found
        self.load_state_dict(state, url)
        if self.dist.rank == 0:
            self.log_records.load(self.num_updates)
        self.resumed_from = url
        self.writer.committed_step = self.num_updates
        log.info("resumed from %s (update %d, epoch %d, batch %d)", url, self.num_updates,
                 *self.position)
        return True

    def init_encoder(self, url: str) -> None:
        """Start the encoder from a model (transformers directory, trainer or fairseq ``.pt``)."""
        src = load_model(url)
        try:
            missing, unexpected = self.model.encoder.load_state_dict(src.state_dict(), strict=False)
        except RuntimeError as e:  # shape mismatches
            raise BadInput(f"--init-from {url} does not match the model config: {e}") from e
        if missing or unexpected:
            raise BadInput(f"--init-from {url} does not match the model config: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]} (set model.* to its "
                           "architecture)")

    def fresh_rng(self) -> None:
        """Distinct dropout/masking streams per rank for a run that starts from update 0."""
        seed_all(self.recipe.train.seed + self.dist.rank)

    # -- the loop --------------------------------------------------------------------------------
    def _wrap(self) -> None:
        d, mcfg = self.dist, self.recipe.model
        net: torch.nn.Module = self.model
        if d.enabled:
            net = self._ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                find_unused_parameters=mcfg.layerdrop > 0)
        if self.recipe.train.compile:
            net = torch.compile(net)
        self._net = net

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dist.device.type == "cuda" and self.recipe.train.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, stream: Iterator[tuple[dict, tuple[int, int]]]) -> dict[str, Any]:
        """One optimizer update over ``update_freq`` batches; returns this rank's figures (tensors
        stay on the device: no host sync)."""
        tcfg, device = self.recipe.train, self.dist.device
        t0 = time.perf_counter()
        samples = 0
        for micro in range(tcfg.update_freq):
            batch, self.position = next(stream)
            sync = micro == tcfg.update_freq - 1 or self._ddp is None
            with (contextlib.nullcontext() if sync else self._ddp.no_sync()), self._autocast():
                wav = batch["wav"].to(device, non_blocking=True)
                lengths = batch["lengths"]
                lengths = lengths.to(device, non_blocking=True) if lengths is not None else None
                labels = batch["labels"].to(device, non_blocking=True)
                out = self.model.loss(self._net(wav, lengths, labels, self.data.label_rate))
                (out["loss"] / tcfg.update_freq).backward()
            self.meter.add(loss=out["loss"], batches=1, correct_m=out["correct_m"],
                           count_m=out["count_m"], correct_u=out["correct_u"],
                           count_u=out["count_u"], samples=batch["n_samples"])
            samples += int(batch["n_samples"])
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.clip_norm)
        # a non-finite gradient (e.g. a bad utterance) skips the update rather than poisoning Adam
        if torch.isfinite(gnorm):
            self.optimizer.step()
        else:
            log.warning("update %d: non-finite gradient norm, update skipped", self.num_updates + 1)
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        self.meter.add(gnorm=gnorm, updates=1)
        return {"loss": out["loss"].detach(), "gnorm": gnorm.detach(), "lr": lr,
                "samples": samples, "step_time_s": time.perf_counter() - t0}

    def log(self) -> dict[str, Any]:
        """Close the log interval: averages over it and every rank (a collective), appended to
        ``log.jsonl`` by rank 0; returns the record."""
        rec = {"step": self.num_updates, "epoch": self.position[0],
               "lr": self.optimizer.param_groups[0]["lr"], "mem_gb": memory_gb(self.dist.device),
               **self.meter.summary(self.dist)}
        self.meter.reset()
        if self.dist.rank == 0:
            self.log_records.append(rec)
            log.info("update %d loss %.4f acc_m %.3f lr %.3g", rec["step"], rec["loss"],
                     rec["acc_m"], rec["lr"])
        self.callbacks.on_log(self, rec)
        return rec

    def save(self, budget_s: float | None = None) -> bool:
        """Checkpoint the current update (a collective). Rank 0 publishes it; when the write fails
        it is retried later (or, with ``budget_s``, now until that many seconds have passed)."""
        state = self.state_dict()
        ok = True
        if self.dist.rank == 0:
            ok = self.writer.submit(self.num_updates, ckpt.to_bytes(state), self.provenance)
            if not ok and budget_s is not None:
                self.writer.drain(budget_s)
                ok = True
            if ok and self.recipe.train.keep_checkpoints:
                self.store.prune(self.recipe.train.keep_checkpoints)
        else:
            self.writer.committed_step, self.writer.committed_at = \
                self.num_updates, self.writer.clock()
        self.dist.barrier()
        if ok:
            self.callbacks.on_checkpoint(self, self.num_updates,
                                         self.run.checkpoint_url(self.num_updates))
        return ok

    def fit(self, end: int | None = None) -> dict[str, Any]:
        """Train to ``end`` updates (default ``train.max_update``), or until a stop request;
        checkpoints every ``save_interval_updates`` and at the end. Returns a summary."""
        tcfg, d = self.recipe.train, self.dist
        end = tcfg.max_update if end is None else min(end, tcfg.max_update)
        self._wrap()
        self.callbacks.on_train_start(self)
        bar = None
        if d.rank == 0 and sys.stdout.isatty():
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.num_updates, unit="upd", dynamic_ncols=True)
        stream = batches(self.planner, *self.position)
        self.model.train()
        last_saved = self.num_updates
        check_every = STOP_CHECK_UPDATES_CUDA if d.device.type == "cuda" else 1
        while self.num_updates < end:
            stats = self.step(stream)
            step = self.num_updates
            if bar is not None:
                bar.update(1)
            if step % tcfg.log_interval == 0 or step == end:
                self.log()
            if step % tcfg.save_interval_updates == 0 or step == end:
                self.save(budget_s=FINAL_BUDGET_S if step == end else None)
                last_saved = step
            elif d.rank == 0:
                self.writer.tick(step)
            self.callbacks.on_step_end(self, stats)
            if step % check_every == 0 and d.any(self.stop.requested):
                log.warning("stop requested (SIGTERM) on %s: every rank stops after update %d",
                            "this rank" if self.stop.requested else "another rank", step)
                self.preempted = True
                self.stop.watchdog(STOP_BUDGET_S + 5)
                if step > last_saved:
                    self.save(budget_s=STOP_BUDGET_S)
                    last_saved = step
                elif d.rank == 0:
                    self.writer.drain(STOP_BUDGET_S)
                break
        if bar is not None:
            bar.close()
        if self.num_updates > last_saved:
            self.save(budget_s=FINAL_BUDGET_S)
        if d.rank == 0:
            self.writer.drain(FINAL_BUDGET_S)
        summary = self.summary()
        self.callbacks.on_train_end(self, summary)
        return summary

    def summary(self) -> dict[str, Any]:
        recs = self.log_records.records
        return {"step": self.num_updates, "max_update": self.recipe.train.max_update,
                "num_classes": self.num_classes, "label_rate": self.data.label_rate,
                "world_size": self.dist.world_size,
                "param_sha256": self.dist.gather(param_digest(self.model)),
                "final_loss": recs[-1]["loss"] if recs else None,
                "finished": self.num_updates >= self.recipe.train.max_update,
                "preempted": self.preempted}

    def export(self) -> None:
        """Rank 0: ``loss.png`` and the transformers model directory ``model/`` of the run."""
        if self.dist.rank != 0:
            return
        if self.log_records.records:
            self.run.write_bytes(TrainRun.PLOT, self.log_records.plot())
        save_hf(self.model.encoder, self.run.model.url)
