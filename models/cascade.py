"""The `cascade` family: recall -> rank -> re-rank, trained as one pipeline run and served as three ONNX graphs.

stages
  recall   a retrieval family (`recall_model`, lightgcn by default) scores the whole catalogue; the items of the
           history window are masked (serving drops them anyway, and here they would take candidate slots); top N =
           `recall_n`.
  rank     DIN (models/din.py) scores the N candidates against the history, with the recall stage's score of each
           candidate (user_vectors · item_vectors, the retrieval contract) as a prior it adds with a learned weight:
           it refines the recall order rather than replacing it; top M = `rerank_m`.
  re-rank  RankNet (models/ranknet.py) re-scores the M with the ranker's scores as a feature (and the optional
           diversity term, `diversity_weight`); serving returns its top k.

forward(history) returns full-catalogue scores whose order IS the cascade's final ranking: positions 1..M by the
re-ranker, M+1..N by the ranker, the rest by the recall stage (recall scores, below every candidate). So
models/evaluate.py's full ranking measures the cascade end to end; `stage_rankings` gives the same for the recall
stage alone and for recall -> rank, for per-stage metrics (models/stage_metrics.py). The stage graphs
(models/cascade_export.py) are `recall_topk`, `rank` and `reranker` as used here, so serving's composition of the
graphs is this forward.

training (`Cascade.fit`, the family hook of models/train.py), in order, each stage on its upstream's output:
  1. recall: the recall family's own `fit` when it has one (lightgcn, mf), else the generic next-item loop (full
     softmax cross-entropy, as models/train.py); the keys its family uses alone (epochs, lr, batch_size, ...).
  2. rank: one sample per training interaction among the `rank_samples` most recent ones whose target is in the
     recall stage's top N for that sample's history (samples where recall missed the target are dropped: the ranker
     never sees such a list at serving time). Candidates = the target + `rank_negatives` items drawn uniformly from
     the other N - 1; loss = softmax cross-entropy over the group (the target is the positive). `rank_epochs`
     epochs, Adam with `rank_lr`, `rank_batch_size`. The DIN item embedding starts from the recall item vectors.
  3. re-rank: the `rerank_samples` most recent of the ranker's samples whose target is in the ranker's top M; the
     M items with their rank scores are the list, the target the only relevant item; RankNet's pairwise loss.
     `rerank_epochs` epochs, same optimiser keys.
The later stages train on the most recent interactions only: under a time split what users pick next drifts (recent
popularity beats all-time popularity by half again on ML-100K), and it bounds their cost. The defaults were chosen
on ML-100K's valid split as the target (train as history), never on test: NDCG@10 after rank (LightGCN recall alone:
0.294) was 0.318 with rank_samples 20k, 0.311 with 40k, 0.317 with all 80k (4x the time); 0.311 with 6 epochs
instead of 3; 0.302 attending over 50 history items instead of 20; 0.318 with 31 negatives instead of 7; and 0.286
without the recall prior.
Under DDP (torchrun) every stage trains with DistributedDataParallel on a DistributedSampler shard; the candidate
lists are computed by every rank from the same (synchronised) weights, so all ranks agree on the sample sets (checked).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DistributedSampler

from models.data import DataError, Interactions, NextItemSamples, read_split
from models.din import DIN
from models.masking import MASKED, mask_history  # noqa: F401 (MASKED: part of this module's interface)
from models.ranknet import RankNet, pairwise_loss

INFERENCE_CHUNK = 128  # samples per forward pass when building candidate lists (bounds DIN's (B, N, L, a) tensor)


def recall_config(config: Any) -> Any:
    """The recall stage's TrainConfig: the cascade's config with `model` set to `recall_model`."""
    return dataclasses.replace(config, model=config.recall_model)


class Cascade(nn.Module):
    family = "cascade"

    def __init__(self, recall: nn.Module, ranker: DIN, reranker: RankNet, recall_n: int, rerank_m: int):
        super().__init__()
        self.recall = recall
        self.ranker = ranker
        self.reranker = reranker
        self.n_items = recall.n_items
        self.history_len = recall.history_len
        self.recall_n = min(recall_n, self.n_items)
        self.rerank_m = min(rerank_m, self.recall_n)

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "Cascade":
        from models.families import get_family  # here, not at the top: the registry imports this module

        recall = get_family(config.recall_model).from_config(recall_config(config), n_items)
        ranker = DIN(n_items, config.embedding_dim, config.hidden_dim, config.rank_attention_dim,
                     min(config.rank_history_len, config.history_len), config.dropout)
        reranker = RankNet(n_items, config.embedding_dim, config.hidden_dim, config.diversity_weight)
        return cls(recall, ranker, reranker, config.recall_n, config.rerank_m)

    # --- the three stages, exactly as exported ---------------------------------------------------------------------

    def recall_scores(self, history: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The recall stage's full-catalogue scores, (B, n_items), the history window masked: user_vectors(history)
        @ item_vectors().T (the retrieval contract of models/families.py). `item_vectors` may be passed precomputed
        (the graphs hold them as a constant, as models/export.py does)."""
        vectors = self.recall.item_vectors() if item_vectors is None else item_vectors
        return mask_history(self.recall.user_vectors(history) @ vectors.T, history)

    def recall_topk(self, history: torch.Tensor,
                    item_vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, items) of the recall stage's top N, best first; items 1-based. The recall graph."""
        scores, columns = torch.topk(self.recall_scores(history, item_vectors), self.recall_n, dim=1)
        return scores, columns + 1

    def recall_prior(self, history: torch.Tensor, candidates: torch.Tensor,
                     item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The recall stage's score of each candidate, (B, C): user_vectors(history) · item_vectors()[c - 1], the
        ranker's prior."""
        vectors = self.recall.item_vectors() if item_vectors is None else item_vectors
        return (self.recall.user_vectors(history).unsqueeze(1) * vectors[candidates - 1]).sum(dim=-1)

    def rank(self, history: torch.Tensor, candidates: torch.Tensor,
             item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The rank stage's scores (B, C) of 1-based candidates (B, C): DIN with the recall score as its prior."""
        return self.ranker(history, candidates, self.recall_prior(history, candidates, item_vectors))

    # --- composition -----------------------------------------------------------------------------------------------

    def _orders(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(recall scores (B, n_items), the N candidates in rank order, the N candidates in final order)."""
        vectors = self.recall.item_vectors()
        recall = self.recall_scores(history, vectors)
        candidates = torch.topk(recall, self.recall_n, dim=1).indices + 1
        rank_scores, by_rank = torch.topk(self.rank(history, candidates, vectors), self.recall_n, dim=1)
        ranked = candidates.gather(1, by_rank)
        m = self.rerank_m
        by_rerank = torch.topk(self.reranker(history, ranked[:, :m], rank_scores[:, :m]), m, dim=1).indices
        final = torch.cat([ranked[:, :m].gather(1, by_rerank), ranked[:, m:]], dim=1)
        return recall, ranked, final

    @staticmethod
    def _place(recall: torch.Tensor, ordered: torch.Tensor) -> torch.Tensor:
        """Full-catalogue scores whose order is `ordered` (B, n) first, then the rest by recall score: the item at
        position p gets max(recall) + 1 + n - p, above every other item's recall score."""
        n = ordered.shape[1]
        top = recall.max(dim=1, keepdim=True).values + 1 + torch.arange(n, 0, -1, dtype=recall.dtype)
        return recall.scatter(1, ordered - 1, top)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Full-catalogue scores (B, n_items) ordered as the cascade's final ranking; column j is item j + 1."""
        recall, _, final = self._orders(history)
        return self._place(recall, final)

    def stage_rankings(self, history: torch.Tensor) -> dict[str, Any]:
        """Full-catalogue scores after each stage (recall alone; recall -> rank; the final list), with N and M."""
        recall, ranked, final = self._orders(history)
        return {"recall": recall, "rank": self._place(recall, ranked), "final": self._place(recall, final),
                "recall_n": self.recall_n, "rerank_m": self.rerank_m}

    # --- training --------------------------------------------------------------------------------------------------

    @classmethod
    def fit(cls, config: Any, manifest: Any, data_dir: str, ctx: Any, emit_progress: Callable[..., None]) -> "Cascade":
        """The family hook of models/train.py: trains the stages in order (module docstring) and returns the model."""
        model = cls.from_config(config, manifest.n_items)
        train = read_split(data_dir, "train", manifest)
        samples = NextItemSamples(train, manifest.n_users, config.history_len)
        if len(samples) == 0:
            raise DataError(f"{data_dir}: the train split is empty")
        fit_recall(model, config, manifest, data_dir, samples, ctx, stage_progress(emit_progress, "recall", 0))
        lists = fit_rank(model, config, samples, recency_order(train), ctx,
                         stage_progress(emit_progress, "rank", config.epochs))
        fit_rerank(model, config, lists, ctx,
                   stage_progress(emit_progress, "rerank", config.epochs + config.rank_epochs))
        return model.eval()


# --- the stages' training ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CandidateLists:
    """The ranker's training samples: recall's top N for each, in recency order (most recent last)."""

    history: torch.Tensor  # int64 (S, L)
    candidates: np.ndarray  # int64 (S, N), recall order
    target_pos: np.ndarray  # int64 (S,), the target's position in `candidates`


def fit_recall(model: Cascade, config: Any, manifest: Any, data_dir: str, samples: NextItemSamples, ctx: Any,
               progress: Callable[..., None]) -> None:
    """The recall family's own `fit` when it has one, else the generic next-item loop; then the downstream stages'
    item embeddings start from its item vectors."""
    from models.families import get_family

    t0 = time.monotonic()
    recall_family = get_family(config.recall_model)
    if hasattr(recall_family, "fit"):
        model.recall = recall_family.fit(recall_config(config), manifest, data_dir, ctx, progress)
    else:
        def next_item_loss(net: nn.Module, rows: np.ndarray) -> torch.Tensor:
            history, target = samples.batch(rows)
            return F.cross_entropy(net(history), target - 1)  # column j scores item j + 1

        train_stage(model.recall, len(samples), config.epochs, next_item_loss, config, ctx, progress, config.lr,
                    config.batch_size)
    model.recall.eval()
    with torch.no_grad():
        vectors = model.recall.item_vectors()
    if tuple(vectors.shape) == (model.n_items, config.embedding_dim):
        model.ranker.init_item_embedding(vectors)
        model.reranker.set_similarity_vectors(vectors)
    elif config.diversity_weight > 0:
        raise ValueError(f"diversity_weight needs the recall stage's item vectors to be (n_items, embedding_dim) "
                         f"= ({model.n_items}, {config.embedding_dim}), got {tuple(vectors.shape)}")
    stage_log("recall", t0, ctx)


def fit_rank(model: Cascade, config: Any, samples: NextItemSamples, recent: np.ndarray, ctx: Any,
             progress: Callable[..., None]) -> CandidateLists:
    """DIN on the recall stage's candidates of the `rank_samples` most recent training samples whose target recall
    found: the target against `rank_negatives` of the other candidates, softmax cross-entropy."""
    t0 = time.monotonic()
    rows = recent[-config.rank_samples :]
    history, target = (t.numpy() for t in samples.batch(rows))
    with torch.inference_mode():  # the recall stage is frozen from here: its vectors are constants of the ranker
        vectors = model.recall.item_vectors()
    (candidates,) = chunked(lambda h: (model.recall_topk(torch.from_numpy(h), vectors)[1].numpy(),), history)
    hit = candidates == target[:, None]
    found = hit.any(axis=1)
    agree(int(found.sum()), ctx, "rank samples")
    if not found.any():
        raise DataError(f"the recall stage found no training target in its top {model.recall_n}")
    lists = CandidateLists(torch.from_numpy(history[found]), candidates[found], hit[found].argmax(axis=1))
    (users,) = chunked(lambda h: (model.recall.user_vectors(torch.from_numpy(h)).numpy(),), history[found])
    users = torch.from_numpy(users)
    n_neg = min(config.rank_negatives, model.recall_n - 1)
    rng = np.random.default_rng(config.seed + 1 + ctx.rank)

    def rank_loss(net: nn.Module, rows: np.ndarray) -> torch.Tensor:
        pos = lists.target_pos[rows]
        neg = rng.integers(0, model.recall_n - 1, size=(len(rows), n_neg))
        neg += neg >= pos[:, None]  # skip the target's position
        group = np.concatenate([pos[:, None], neg], axis=1)
        items = torch.from_numpy(np.take_along_axis(lists.candidates[rows], group, axis=1))
        prior = (users[rows].unsqueeze(1) * vectors[items - 1]).sum(dim=-1)  # = Cascade.recall_prior
        logits = net(lists.history[rows], items, prior)
        return F.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long))  # column 0 is the target

    if n_neg > 0:
        train_stage(model.ranker, len(lists.target_pos), config.rank_epochs, rank_loss, config, ctx, progress,
                    config.rank_lr, config.rank_batch_size)
    model.ranker.eval()
    stage_log("rank", t0, ctx)
    return lists


def fit_rerank(model: Cascade, config: Any, lists: CandidateLists, ctx: Any, progress: Callable[..., None]) -> None:
    """RankNet on the ranker's top M of the `rerank_samples` most recent rank samples whose target the ranker kept."""
    t0 = time.monotonic()
    with torch.inference_mode():
        vectors = model.recall.item_vectors()
    keep = slice(-config.rerank_samples, None)
    history, candidates = lists.history[keep], lists.candidates[keep]
    target = candidates[np.arange(len(candidates)), lists.target_pos[keep]]

    def top_m(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cands = torch.from_numpy(candidates[rows])
        scores, pos = torch.topk(model.rank(history[rows], cands, vectors), model.rerank_m, dim=1)
        return cands.gather(1, pos).numpy(), scores.numpy()

    m_items, m_scores = chunked(top_m, np.arange(len(candidates)))
    relevant = m_items == target[:, None]
    found = relevant.any(axis=1)
    agree(int(found.sum()), ctx, "re-rank samples")
    r_history = history[torch.from_numpy(found)]
    r_items, r_scores, r_relevant = (torch.from_numpy(a[found]) for a in (m_items, m_scores, relevant))

    def rerank_loss(net: nn.Module, rows: np.ndarray) -> torch.Tensor:
        return pairwise_loss(net(r_history[rows], r_items[rows], r_scores[rows]), r_relevant[rows])

    if found.any() and model.rerank_m > 1:
        train_stage(model.reranker, int(found.sum()), config.rerank_epochs, rerank_loss, config, ctx, progress,
                    config.rank_lr, config.rank_batch_size)
    model.reranker.eval()
    stage_log("rerank", t0, ctx)


# --- stage training helpers ----------------------------------------------------------------------------------------


def recency_order(train: Interactions) -> np.ndarray:
    """Indices of NextItemSamples (flat positions of the user-grouped sequence, models/data.py) sorted by the
    interaction's time, oldest first (stable: ties keep the sequence order)."""
    ts = train.ts[np.argsort(train.user, kind="stable")]  # the same stable sort UserSequences uses
    return np.argsort(ts, kind="stable")


def chunked(fn: Callable[[np.ndarray], tuple[np.ndarray, ...]], rows: np.ndarray) -> list[np.ndarray]:
    """fn (returning a tuple of arrays) over chunks of `rows`, each output concatenated; no autograd."""
    with torch.inference_mode():
        parts = [fn(rows[i : i + INFERENCE_CHUNK]) for i in range(0, len(rows), INFERENCE_CHUNK)]
    return [np.concatenate(column) for column in zip(*parts)]


def agree(count: int, ctx: Any, what: str) -> None:
    """Every rank must train on the same sample set (the same number of steps, or DDP hangs): check it."""
    if not ctx.enabled:
        return
    t = torch.tensor([count, -count], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[0]) != -int(t[1]):
        raise RuntimeError(f"ranks disagree on the {what}: {-int(t[1])}..{int(t[0])} (non-deterministic inference?)")


def stage_progress(emit_progress: Callable[..., None], stage: str, epoch_offset: int) -> Callable[..., None]:
    """The progress callback for one stage: epochs numbered after the previous stages' (one monotonic epoch count
    for the whole run), and the stage named."""

    def progress(**fields: Any) -> None:
        fields["epoch"] = fields["epoch"] + epoch_offset
        emit_progress(**fields, stage=stage)

    return progress


def stage_log(stage: str, t0: float, ctx: Any) -> None:
    if ctx.is_main:
        print(f"cascade: stage {stage} took {time.monotonic() - t0:.1f}s", file=sys.stderr)


def train_stage(module: nn.Module, n_samples: int, epochs: int,
                batch_loss: Callable[[nn.Module, np.ndarray], torch.Tensor], config: Any, ctx: Any,
                progress: Callable[..., None], lr: float, batch_size: int) -> float:
    """Adam over `epochs` passes of a DistributedSampler over range(n_samples); batch_loss(net, rows) -> loss. Under
    DDP `net` is the DDP wrapper (call it, not its methods, so gradients are synchronised). Returns the last epoch's
    mean loss across ranks."""
    module.train()
    net = DistributedDataParallel(module) if ctx.enabled else module
    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=config.weight_decay)
    sampler = DistributedSampler(range(n_samples), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=config.seed)
    steps_per_epoch = math.ceil(len(sampler) / batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    final_loss = float("nan")
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)
        loss_sum, seen = 0.0, 0
        t_epoch = last_log = time.monotonic()
        for step, indices in enumerate(BatchSampler(sampler, batch_size, drop_last=False), start=1):
            loss = batch_loss(net, np.asarray(indices))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss {value} at epoch {epoch} step {step} (lower lr?)")
            loss_sum += value * len(indices)
            seen += len(indices)
            if step == steps_per_epoch:
                break
            now = time.monotonic()
            if now - last_log >= config.log_every_seconds:
                last_log = now
                progress(epoch=epoch, step=step, steps_per_epoch=steps_per_epoch, loss=loss_sum / seen,
                         samples_per_sec=seen * ctx.world_size / (now - t_epoch))
        final_loss = mean_across_ranks(loss_sum, seen, ctx)
        progress(epoch=epoch, step=steps_per_epoch, steps_per_epoch=steps_per_epoch, loss=final_loss,
                 samples_per_sec=seen * ctx.world_size / (time.monotonic() - t_epoch))
    module.eval()
    return final_loss


def mean_across_ranks(total: float, count: int, ctx: Any) -> float:
    if not ctx.enabled:
        return total / max(count, 1)
    t = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))
