"""Train a model family on a dataset directory, single process or DDP under torchrun.

    OMP_NUM_THREADS=1 python -m models.train --data-dir D --out-dir O [--config-json '{"epochs": 3}'] \
        [--resume O/checkpoints/epoch-1.pt] [--supervisor-pid PID]
    OMP_NUM_THREADS=1 GLOO_SOCKET_IFNAME=lo torchrun --standalone --nproc_per_node=2 -m models.train --data-dir D ...

Task: next-item prediction. One sample per train interaction: (the user's previous `history_len` items, the item),
loss = full softmax cross-entropy over all items, Adam. Families with `uses_time` (models/continuous_time.py) also get
the history's timestamps and query_time = the target's time. Under DDP each process takes `batch_size` samples per step
from its DistributedSampler shard (global batch = batch_size * world_size).

stdout (rank 0 only), JSON lines:
  {"event":"start","world_size":W,"n_samples":N,"epochs":E,"start_epoch":S,"steps_per_epoch":K,"n_items":I,
   "n_params":P,"model":"two_tower"}
  {"event":"progress","epoch":e,"step":s,"steps_per_epoch":K,"loss":x,"samples_per_sec":y}
      at most every log_every_seconds (loss: rank 0's running mean this epoch) and at each epoch end
      (step = K, loss: mean over the epoch across all ranks); samples_per_sec counts all ranks
  {"event":"checkpoint","epoch":e,"path":"/abs/O/checkpoints/epoch-<e>.pt"}   after each completed epoch
  {"event":"result","model_path":"/abs/O/model.pt","epochs":E,"final_loss":x,"samples_per_sec":y,
   "train_seconds":t,"world_size":W,"resumed_from_epoch":S_or_0,"config":{resolved TrainConfig}}
      + "recent_prior":{...} when config recent_prior_days > 0: model.pt is then the model wrapped in a
      recent-popularity prior fitted on the valid split after training (models/recent_prior.py; checkpoints hold
      the base alone)
Exit codes: 0 ok, 1 error, 2 usage, 3 supervisor gone, 143 SIGTERM (see models/jsonl.py).

--resume continues from the epoch after the checkpoint's. Without --config-json the checkpoint's config is used; with
it, its architecture keys must match the checkpoint's (the other keys, e.g. epochs, may change). Data order is
DistributedSampler(seed, epoch) and RNG state is restored per rank, so a resumed run repeats the uninterrupted one.

Families with their own training procedure (iALS, LightGCN, the cascade) define a classmethod/staticmethod
    fit(config, manifest, data_dir, ctx, emit_progress[, resume]) -> the trained module
and train.py calls it instead of the loop above (train_with_fit), with the same events, files and exit codes:
  - start: n_samples = train rows, steps_per_epoch = the family's fit_steps_per_epoch(config, n_samples, world_size)
    if it has one, else 1; n_params = the values of the module's state_dict (buffers count: iALS trains none).
  - emit_progress(epoch=e, loss=x, samples_per_sec=y, [step=s, steps_per_epoch=K,] [model=m, state=d,] **extra)
    (keywords only; call it on every rank, it prints on rank 0) prints one progress line (extra fields, e.g. a
    cascade's `stage`, are added to it); a call with step omitted or step == steps_per_epoch ends epoch e. An epoch
    end that passes `model`, an instance of the run's family, also writes checkpoints/epoch-<e>.pt (rank 0) with
    `fit_state` = state (tensors/numbers/strings only: it is loaded with weights_only) and prints the checkpoint line.
    After fit returns, a run whose last epoch has no checkpoint gets one (marked fit_complete), then model.pt.
  - --resume: the checkpoint reaches fit as `resume` (the checkpoint dict: model_state, epoch, loss, fit_state) when
    fit has that parameter; a fit_complete checkpoint covering `epochs` needs no fit (the model is rebuilt from it);
    otherwise the run stops with a CheckpointError saying the family cannot resume.
  - result: samples_per_sec = the mean of the epoch-end progress lines' (0 when no epoch ran).
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DistributedSampler

from models import checkpoint, distributed
from models.config import ConfigError, TrainConfig
from models.data import DataError, NextItemSamples, read_manifest, read_split
from models.families import get_family
from models.jsonl import ArgumentParser, UsageError, emit, run, start_supervisor_watch
from models.recent_prior import with_recent_prior


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.train", description="Train a recommender model (JSON lines on stdout).")
    p.add_argument("--data-dir", required=True, help="dataset directory (manifest.json, train.parquet, ...)")
    p.add_argument("--out-dir", required=True, help="where checkpoints/ and model.pt are written")
    p.add_argument("--config-json", default=None, help="TrainConfig overrides as a JSON object")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue from this epoch checkpoint")
    p.add_argument("--supervisor-pid", type=int, default=None, help="exit (code 3) when this process is gone")
    return p.parse_args(argv)


def resolve_config(args: Any, resume: dict[str, Any] | None) -> TrainConfig:
    if resume is None:
        return TrainConfig.from_json(args.config_json)
    saved = TrainConfig.from_dict(resume["config"])
    if not args.config_json:
        return saved
    config = TrainConfig.from_json(args.config_json)
    for key in TrainConfig.ARCHITECTURE_KEYS:
        if getattr(config, key) != getattr(saved, key):
            raise ConfigError(
                f"--resume: config key {key!r} is {getattr(config, key)!r} but the checkpoint was trained with "
                f"{getattr(saved, key)!r}"
            )
    return config


def mean_across_ranks(total: float, count: int, ctx: distributed.DistContext) -> float:
    if not ctx.enabled:
        return total / max(count, 1)
    t = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))


def gather_rng_states(ctx: distributed.DistContext) -> list[dict[str, Any]]:
    state = checkpoint.get_rng_state()
    if not ctx.enabled:
        return [state]
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, state)
    return states


def train(args: Any, ctx: distributed.DistContext) -> None:
    resume = checkpoint.load(args.resume, expect=(checkpoint.CHECKPOINT_FORMAT,)) if args.resume else None
    config = resolve_config(args, resume)
    manifest = read_manifest(args.data_dir)
    if hasattr(get_family(config.model), "fit"):  # the family brings its own training procedure
        return train_with_fit(args, ctx, config, manifest, resume)
    samples = NextItemSamples(read_split(args.data_dir, "train", manifest), manifest.n_users, config.history_len)
    if len(samples) == 0:
        raise DataError(f"{args.data_dir}: the train split is empty")

    # Per-rank seeds: ranks may differ in randomness; DDP broadcasts rank 0's initial weights to all of them.
    checkpoint.seed_everything(config.seed + ctx.rank)
    model = get_family(config.model).from_config(config, manifest.n_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_epoch = 1
    if resume is not None:
        if int(resume["n_items"]) != manifest.n_items:
            raise checkpoint.CheckpointError(
                f"--resume: checkpoint has {resume['n_items']} items, dataset has {manifest.n_items}"
            )
        model.load_state_dict(resume["model_state"])
        optimizer.load_state_dict(resume["optimizer_state"])
        # The optimizer keeps the checkpoint's lr/weight_decay unless the config changes them on purpose.
        for group in optimizer.param_groups:
            group.update(lr=config.lr, weight_decay=config.weight_decay)
        start_epoch = int(resume["epoch"]) + 1
        rng_states = resume.get("rng_states") or []
        if len(rng_states) == ctx.world_size:
            checkpoint.set_rng_state(rng_states[ctx.rank])
        else:  # a different world size: restart each rank's RNG deterministically instead
            print(f"resume: checkpoint has {len(rng_states)} RNG states for {ctx.world_size} ranks; reseeding",
                  file=sys.stderr)
            checkpoint.seed_everything(config.seed + ctx.rank + 1000 * start_epoch)
    net = DistributedDataParallel(model) if ctx.enabled else model

    # drop_last=False pads the shards to equal length: every rank runs the same number of steps (DDP needs that).
    sampler = DistributedSampler(samples, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed)
    steps_per_epoch = math.ceil(len(sampler) / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    out_dir = os.path.abspath(args.out_dir)
    emit("start", world_size=ctx.world_size, n_samples=len(samples), epochs=config.epochs, start_epoch=start_epoch,
         steps_per_epoch=steps_per_epoch, n_items=manifest.n_items,
         n_params=sum(p.numel() for p in model.parameters()), model=config.model)

    final_loss = float(resume["loss"]) if resume is not None else float("nan")
    processed = 0  # samples this rank trained on; all ranks process the same number
    t_start = time.monotonic()
    for epoch in range(start_epoch, config.epochs + 1):
        sampler.set_epoch(epoch)
        net.train()
        loss_sum, seen = 0.0, 0
        t_epoch = last_log = time.monotonic()
        for step, indices in enumerate(BatchSampler(sampler, config.batch_size, drop_last=False), start=1):
            if getattr(model, "uses_time", False):  # continuous-time families: + timestamps, query = target's time
                history, timestamps, query_time, target = samples.batch_with_time(np.asarray(indices))
                logits = net(history, timestamps, query_time)
            else:
                history, target = samples.batch(np.asarray(indices))
                logits = net(history)
            loss = F.cross_entropy(logits, target - 1)  # column j scores item j + 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss {value} at epoch {epoch} step {step} (lower lr?)")
            loss_sum += value * len(indices)
            seen += len(indices)
            now = time.monotonic()
            if step == steps_per_epoch:
                break
            if now - last_log >= config.log_every_seconds:
                last_log = now
                emit("progress", epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, loss=loss_sum / seen,
                     samples_per_sec=seen * ctx.world_size / (now - t_epoch))
        processed += seen

        # Collectives below run on every rank; only rank 0 prints and writes.
        final_loss = mean_across_ranks(loss_sum, seen, ctx)
        emit("progress", epoch=epoch, step=steps_per_epoch, steps_per_epoch=steps_per_epoch, loss=final_loss,
             samples_per_sec=seen * ctx.world_size / (time.monotonic() - t_epoch))
        rng_states = gather_rng_states(ctx)
        if ctx.is_main:
            path = checkpoint.save_atomic(
                {
                    **model_header(config, model),
                    "format": checkpoint.CHECKPOINT_FORMAT,
                    "epoch": epoch,
                    "loss": final_loss,
                    "optimizer_state": optimizer.state_dict(),
                    "world_size": ctx.world_size,
                    "rng_states": rng_states,
                },
                os.path.join(out_dir, "checkpoints", f"epoch-{epoch}.pt"),
            )
            emit("checkpoint", epoch=epoch, path=path)
    train_seconds = time.monotonic() - t_start

    if ctx.is_main:
        model, prior = with_recent_prior(config, model, args.data_dir)  # config recent_prior_days > 0 only
        model_path = checkpoint.save_atomic(
            {**model_header(config, model), "format": checkpoint.MODEL_FORMAT, "epochs": config.epochs,
             "final_loss": final_loss},
            os.path.join(out_dir, "model.pt"),
        )
        emit("result", model_path=model_path, epochs=config.epochs, final_loss=final_loss,
             samples_per_sec=processed * ctx.world_size / train_seconds if processed else 0.0,
             train_seconds=train_seconds, world_size=ctx.world_size,
             resumed_from_epoch=start_epoch - 1 if resume is not None else 0, config=config.to_dict(), **prior)


class FitProgress:
    """The `emit_progress` callback a family's fit receives (module docstring): progress lines, epoch checkpoints."""

    def __init__(self, config: TrainConfig, ctx: distributed.DistContext, out_dir: str, steps_per_epoch: int):
        self.config, self.ctx, self.out_dir, self.steps_per_epoch = config, ctx, out_dir, steps_per_epoch
        self.family = get_family(config.model)
        self.epoch, self.checkpoint_epoch, self.final_loss = 0, 0, float("nan")
        self.epoch_rates: list[float] = []

    def __call__(self, *, epoch: int, loss: float, samples_per_sec: float, step: int | None = None,
                 steps_per_epoch: int | None = None, model: torch.nn.Module | None = None,
                 state: dict[str, Any] | None = None, **extra: Any) -> None:
        total = self.steps_per_epoch if steps_per_epoch is None else steps_per_epoch
        step = total if step is None else step
        emit("progress", epoch=epoch, step=step, steps_per_epoch=total, loss=loss, samples_per_sec=samples_per_sec,
             **extra)
        if step != total:
            return
        self.epoch, self.final_loss = max(self.epoch, epoch), loss
        self.epoch_rates.append(samples_per_sec)
        # Only the run's own family checkpoints: a cascade's recall stage reports through its own fit, and its model
        # is not the cascade (its checkpoint would not rebuild this run's model).
        if model is not None and isinstance(model, self.family):
            self.save(model, epoch, loss, state)

    def save(self, model: torch.nn.Module, epoch: int, loss: float, state: dict[str, Any] | None = None,
             complete: bool = False) -> None:
        if self.ctx.is_main:
            path = checkpoint.save_atomic(
                {**model_header(self.config, model), "format": checkpoint.CHECKPOINT_FORMAT, "epoch": epoch,
                 "loss": loss, "world_size": self.ctx.world_size, "fit_state": state or {}, "fit_complete": complete},
                os.path.join(self.out_dir, "checkpoints", f"epoch-{epoch}.pt"),
            )
            emit("checkpoint", epoch=epoch, path=path)
        self.checkpoint_epoch = epoch


def train_with_fit(args: Any, ctx: distributed.DistContext, config: TrainConfig, manifest: Any,
                   resume: dict[str, Any] | None) -> None:
    """Train with the family's own fit (module docstring), keeping train.py's events, files and resume rules."""
    family: Any = get_family(config.model)
    finished = resume is not None and bool(resume.get("fit_complete")) and int(resume["epoch"]) >= config.epochs
    if resume is not None:
        if int(resume["n_items"]) != manifest.n_items:
            raise checkpoint.CheckpointError(
                f"--resume: checkpoint has {resume['n_items']} items, dataset has {manifest.n_items}"
            )
        if not finished and "resume" not in inspect.signature(family.fit).parameters:
            raise checkpoint.CheckpointError(
                f"--resume: family {config.model!r} trains with its own fit() and cannot continue from a checkpoint "
                f"(epoch {resume['epoch']} of {config.epochs}); train again without --resume"
            )
    n_samples = len(read_split(args.data_dir, "train", manifest))
    if n_samples == 0:
        raise DataError(f"{args.data_dir}: the train split is empty")
    plan = getattr(family, "fit_steps_per_epoch", None)
    steps_per_epoch = int(plan(config, n_samples, ctx.world_size)) if plan is not None else 1
    model = family.from_config(config, manifest.n_items)
    start_epoch = int(resume["epoch"]) + 1 if resume is not None else 1
    emit("start", world_size=ctx.world_size, n_samples=n_samples, epochs=config.epochs, start_epoch=start_epoch,
         steps_per_epoch=steps_per_epoch, n_items=manifest.n_items,
         n_params=sum(t.numel() for t in model.state_dict().values()), model=config.model)

    progress = FitProgress(config, ctx, os.path.abspath(args.out_dir), steps_per_epoch)
    t_start = time.monotonic()
    if finished:
        assert resume is not None
        model.load_state_dict(resume["model_state"])
        progress.epoch = progress.checkpoint_epoch = int(resume["epoch"])
        progress.final_loss = float(resume["loss"])
    else:
        model = family.fit(config, manifest, args.data_dir, ctx, progress,
                           **({"resume": resume} if resume is not None else {}))
    train_seconds = time.monotonic() - t_start
    model.eval()
    final_epoch = max(config.epochs, progress.epoch)
    if progress.checkpoint_epoch < final_epoch:
        progress.save(model, final_epoch, progress.final_loss, complete=True)
    if ctx.is_main:
        model, prior = with_recent_prior(config, model, args.data_dir)  # config recent_prior_days > 0 only
        model_path = checkpoint.save_atomic(
            {**model_header(config, model), "format": checkpoint.MODEL_FORMAT, "epochs": config.epochs,
             "final_loss": progress.final_loss},
            os.path.join(os.path.abspath(args.out_dir), "model.pt"),
        )
        rates = progress.epoch_rates
        emit("result", model_path=model_path, epochs=config.epochs, final_loss=progress.final_loss,
             samples_per_sec=sum(rates) / len(rates) if rates else 0.0, train_seconds=train_seconds,
             world_size=ctx.world_size, resumed_from_epoch=start_epoch - 1 if resume is not None else 0,
             config=config.to_dict(), **prior)


def model_header(config: TrainConfig, model: torch.nn.Module) -> dict[str, Any]:
    """The self-describing part shared by checkpoints and model files (see models/checkpoint.py)."""
    return {
        "format_version": checkpoint.FORMAT_VERSION,
        "family": config.model,
        "config": config.to_dict(),
        "n_items": model.n_items,
        "history_len": model.history_len,
        "model_state": model.state_dict(),
        "torch_version": str(torch.__version__),  # a str subclass that weights_only loading rejects
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.supervisor_pid is not None:
        if args.supervisor_pid <= 0:
            raise UsageError(f"--supervisor-pid must be a positive pid, got {args.supervisor_pid}")
        start_supervisor_watch(args.supervisor_pid)
    ctx = distributed.setup()
    ok = False
    try:
        train(args, ctx)
        ok = True
    finally:
        distributed.teardown(ok)


if __name__ == "__main__":
    run(main)
