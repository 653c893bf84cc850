"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation", SIGIR
2020), trained as RecBole's LightGCN (recbole/model/general_recommender/lightgcn.py) and served by fold-in.

Training (fit): ego embeddings E0 for every user and item (Xavier-uniform, as RecBole), propagated K = n_gcn_layers
times over the symmetric normalised user-item adjacency A_hat = D^-1/2 A D^-1/2 of the train split's distinct pairs
(a torch sparse CSR matrix; every step propagates the whole graph, as RecBole does), final embedding = the mean of
the K + 1 layers. Loss: BPR, -log sigmoid(s(u, pos) - s(u, neg)), one negative per train interaction
drawn uniformly from the items the user has no train interaction with, plus gcn_reg * |E0 of the triple|^2 / 2 per
triple (the original LightGCN's l2 on the ego embeddings; RecBole's default reg_weight 1e-5 multiplies unsquared norms
instead). BPR rather than sampled softmax: it is the paper's and RecBole's loss, so our figures compare with
RecBole's published LightGCN numbers, and each step's cost is the full-graph propagation either way, not the loss.
Adam with `lr`; `batch_size` triples per step and process. Under DDP (torchrun, gloo) the module is wrapped in
DistributedDataParallel: every rank propagates the whole (small) graph and takes its shard of the epoch's triples,
gradients are averaged, so the ranks' embeddings stay identical.

Serving (user_vectors): the serving graph has no user ids, so every user, including a training user, gets the fold-in
of one LightGCN layer from the history's distinct items h (the last history_len; repeats count once, as the
adjacency's 0/1 entries):
    u = sum_{i in h} f_i / sqrt(|h|),   f_i = deg_i^-1/2 * (1 / (K + 1)) * sum_{k=0}^{K-1} e_i^(k)
which for a training user whose history is their train neighbourhood is exactly their final LightGCN embedding minus
the ego term e_u^(0) / (K + 1) (the part no history can give). f is stored per item (`item_fold`, deg = train degree,
at least 1), item_vectors = the final propagated item embeddings, both frozen into the module after training, so the
graph is a ScatterElements (repeat counts), a gather, a sum and a MatMul and models/export.py exports it unchanged.
What the missing ego term costs, ML-100K random 8:1:1, NDCG@10 of the same trained model: 0.287 scoring with the
trained user embeddings (what RecBole evaluates), 0.275 with the fold-in. An empty history gets the mean final
embedding of the training users (a popularity-like order). The contract of models/families.py holds.

    OMP_NUM_THREADS=1 python -m models.train --data-dir D --out-dir O \
        --config-json '{"model": "lightgcn", "epochs": 40, "lr": 0.01, "batch_size": 4096, "history_len": 200}'
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models.user_item import UserItemMatrix, multiplicity, read_user_item

NEGATIVE_ROUNDS = 5  # vectorised redraws of negatives that hit a positive, before the exact per-row fallback


class LightGCN(nn.Module):
    """The serving side: fold-in user vectors and frozen propagated item embeddings (module docstring)."""

    family = "lightgcn"

    def __init__(self, n_items: int, embedding_dim: int, history_len: int, n_layers: int = 2):
        super().__init__()
        self.n_items = n_items
        self.history_len = history_len
        self.n_layers = n_layers
        self.register_buffer("item_fold", torch.zeros(n_items + 1, embedding_dim))  # row 0: padding (zero)
        self.register_buffer("item_final", torch.zeros(n_items, embedding_dim))
        self.register_buffer("empty_user", torch.zeros(embedding_dim))

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "LightGCN":
        return cls(n_items, config.embedding_dim, config.history_len, config.n_gcn_layers)

    @staticmethod
    def fit_steps_per_epoch(config: Any, n_samples: int, world_size: int) -> int:
        steps = math.ceil(math.ceil(n_samples / world_size) / config.batch_size)
        return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch is not None else steps

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """history: int64 (batch, history_len), 0 = padding. Returns (batch, d): one propagation layer's fold-in."""
        real = (history > 0).to(self.item_fold.dtype)
        once = (real / multiplicity(history, self.n_items)).unsqueeze(-1)  # each distinct item's positions sum to 1
        size = once.sum(dim=1)  # |h|, (B, 1)
        u = (self.item_fold[history] * once).sum(dim=1) / size.clamp_min(1.0).sqrt()
        return torch.where(size > 0.5, u, self.empty_user)

    def item_vectors(self) -> torch.Tensor:
        """Vectors of the real items 1..n_items, shape (n_items, d): row j is item j + 1."""
        return self.item_final

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Scores of all real items, (batch, n_items); column j is item j + 1."""
        return self.user_vectors(history) @ self.item_vectors().T

    @classmethod
    def fit(cls, config: Any, manifest: Any, data_dir: str, ctx: Any, emit_progress: Callable[..., None],
            resume: Optional[dict[str, Any]] = None) -> "LightGCN":
        """The `fit` hook of models/train.py. Negatives come from a generator seeded by (seed, epoch, rank) and the
        triples' order from one seeded by (seed, epoch): with the checkpoint's embeddings and Adam state (fit_state)
        a resumed run repeats the uninterrupted one."""
        matrix = read_user_item(data_dir, manifest)
        world = ctx.world_size if ctx.enabled else 1
        torch.manual_seed(config.seed)  # the same initial embeddings on every rank (DDP also broadcasts rank 0's)
        graph = Propagation(matrix, config.embedding_dim, config.n_gcn_layers)
        optimizer = torch.optim.Adam(graph.parameters(), lr=config.lr)
        start = 1
        if resume is not None:
            state = resume["fit_state"]
            graph.load_state_dict(state["graph"])
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:
                group.update(lr=config.lr)
            start = int(resume["epoch"]) + 1
        net = DistributedDataParallel(graph) if ctx.enabled else graph
        model = cls.from_config(config, manifest.n_items)
        graph.freeze_into(model)

        # One triple per train interaction (repeats included): (user, positive item).
        users = np.repeat(matrix.user, matrix.count.astype(np.int64))
        positives = np.repeat(matrix.item, matrix.count.astype(np.int64))
        pair_keys = matrix.user * matrix.n_items + matrix.item  # sorted: read_user_item sorts by (user, item)
        per_rank = math.ceil(len(users) / world)
        steps = cls.fit_steps_per_epoch(config, len(users), world)
        for epoch in range(start, config.epochs + 1):
            order = np.random.default_rng((config.seed, epoch)).permutation(len(users))
            order = np.resize(order, per_rank * world)[ctx.rank :: world]  # equal shards (wrap, like DDP's sampler)
            rng = np.random.default_rng((config.seed, epoch, ctx.rank))
            graph.train()
            loss_sum, seen = 0.0, 0
            t_epoch = last_log = time.monotonic()
            for step in range(1, steps + 1):
                rows = order[(step - 1) * config.batch_size : step * config.batch_size]
                u, pos = users[rows], positives[rows]
                neg = sample_negatives(u, pair_keys, matrix.n_items, rng)
                loss = net(torch.from_numpy(u), torch.from_numpy(pos), torch.from_numpy(neg), config.gcn_reg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"non-finite loss {value} at epoch {epoch} step {step} (lower lr?)")
                loss_sum += value * len(rows)
                seen += len(rows)
                now = time.monotonic()
                if step < steps and now - last_log >= config.log_every_seconds:
                    last_log = now
                    emit_progress(epoch=epoch, step=step, steps_per_epoch=steps, loss=loss_sum / seen,
                                  samples_per_sec=seen * world / (now - t_epoch))
            epoch_loss = mean_across_ranks(loss_sum, seen, ctx)
            graph.freeze_into(model)
            emit_progress(epoch=epoch, step=steps, steps_per_epoch=steps, loss=epoch_loss,
                          samples_per_sec=seen * world / (time.monotonic() - t_epoch), model=model,
                          state={"graph": graph.state_dict(), "optimizer": optimizer.state_dict()})
        return model.eval()


class Propagation(nn.Module):
    """The training side: ego embeddings of every user and item, and the normalised adjacency they propagate over.
    forward(users, pos, neg, reg) is the BPR loss of a batch of triples (0-based item columns)."""

    def __init__(self, matrix: UserItemMatrix, dim: int, n_layers: int):
        super().__init__()
        self.n_users, self.n_items, self.n_layers = matrix.n_users, matrix.n_items, n_layers
        self.user = nn.Parameter(torch.empty(matrix.n_users, dim))
        self.item = nn.Parameter(torch.empty(matrix.n_items, dim))
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)
        self.user_degree = torch.from_numpy(matrix.user_degree())
        self.item_degree = torch.from_numpy(matrix.item_degree())
        self.adjacency = normalised_adjacency(matrix)

    def layers(self) -> list[torch.Tensor]:
        """E^(0..K), each (n_users + n_items, d), users first."""
        x = torch.cat([self.user, self.item])
        out = [x]
        for _ in range(self.n_layers):
            x = SymmetricSpMM.apply(self.adjacency, x)
            out.append(x)
        return out

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(final user embeddings, final item embeddings): the mean of the layers."""
        mean = torch.stack(self.layers()).mean(dim=0)
        return mean[: self.n_users], mean[self.n_users :]

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float) -> torch.Tensor:
        user_final, item_final = self.final()
        u = user_final[users]
        margin = (u * item_final[pos]).sum(dim=1) - (u * item_final[neg]).sum(dim=1)
        bpr = F.softplus(-margin).mean()  # = -log sigmoid(margin), without its underflow
        ego = self.user[users].square().sum() + self.item[pos].square().sum() + self.item[neg].square().sum()
        return bpr + reg * ego / (2 * len(users))

    @torch.no_grad()
    def freeze_into(self, model: LightGCN) -> None:
        """Write the serving buffers (module docstring) from the current embeddings."""
        layers = self.layers()
        k = self.n_layers
        items = [layer[self.n_users :] for layer in layers]
        model.item_final.copy_(torch.stack(items).mean(dim=0))
        fold = torch.stack(items[:k]).sum(dim=0) / (k + 1)
        model.item_fold[1:] = fold * self.item_degree.clamp_min(1).to(fold.dtype).rsqrt().unsqueeze(1)
        user_final = torch.stack([layer[: self.n_users] for layer in layers]).mean(dim=0)
        active = self.user_degree > 0
        model.empty_user.copy_(user_final[active].mean(dim=0) if bool(active.any()) else user_final.mean(dim=0))


class SymmetricSpMM(torch.autograd.Function):
    """adjacency @ x for a SYMMETRIC sparse adjacency: the gradient with respect to x is adjacency @ grad, so the
    backward pass needs no transpose. torch.sparse.mm's own backward transposes (and re-sorts) the COO matrix every
    step; with a CSR matrix and this shortcut a forward + backward step over ML-100K takes a quarter of the time."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:  # type: ignore[override]
        return None, ctx.adjacency @ grad


def normalised_adjacency(matrix: UserItemMatrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 over users then items, A the 0/1 matrix of distinct train pairs (both directions, so the result
    is symmetric): sparse CSR, (n_users + n_items) squared."""
    rows = np.concatenate([matrix.user, matrix.n_users + matrix.item])
    cols = np.concatenate([matrix.n_users + matrix.item, matrix.user])
    degree = np.concatenate([matrix.user_degree(), matrix.item_degree()]).astype(np.float64)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    values = inv_sqrt[rows] * inv_sqrt[cols]
    n = matrix.n_users + matrix.n_items
    crow = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the one operation used here is stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols),
                                       torch.from_numpy(values).float(), (n, n))


def sample_negatives(users: np.ndarray, pair_keys: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """One item column per user drawn uniformly from the items NOT among the user's train items (pair_keys = user *
    n_items + item, sorted): vectorised redraws of the collisions, then, for the few rows still colliding after
    NEGATIVE_ROUNDS (users who have most of the catalogue), a draw from the explicit complement. A user who has every
    item keeps a random one (no negative exists)."""

    def collides(neg: np.ndarray, rows: np.ndarray) -> np.ndarray:
        keys = users[rows] * n_items + neg[rows]
        return pair_keys[np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)] == keys

    neg = rng.integers(0, n_items, size=len(users))
    rows = np.arange(len(users))
    for _ in range(NEGATIVE_ROUNDS):
        rows = rows[collides(neg, rows)]
        if len(rows) == 0:
            return neg
        neg[rows] = rng.integers(0, n_items, size=len(rows))
    for row in rows[collides(neg, rows)]:
        base = users[row] * n_items
        own = pair_keys[np.searchsorted(pair_keys, base) : np.searchsorted(pair_keys, base + n_items)] - base
        free = np.setdiff1d(np.arange(n_items), own)
        if len(free):
            neg[row] = rng.choice(free)
    return neg


def mean_across_ranks(total: float, count: int, ctx: Any) -> float:
    if not ctx.enabled:
        return total / max(count, 1)
    t = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1].clamp(min=1))
