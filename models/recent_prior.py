"""A recent-popularity prior for any single-stage retrieval family: score(u, i) = base(u, i) + beta * log1p(c_i),
c_i = the item's interactions in the last `recent_prior_days` days before the model is served.

Why: on a global time split the test window is the catalogue's last weeks, and on ML-100K what is popular moves fast:
recent popularity (models/evaluate.py's floor) beats every family on the time split's warm users, while the models
see time only through the order of a history. The prior hands them the one signal they lack, with one weight chosen
on the validation period, never on test.

Kept inside the retrieval contract of models/families.py (RecentPrior): one more dimension on each side,
    user_vectors(...) = [base.user_vectors(...), beta]      item_vectors() = [base.item_vectors(), log1p(c)]
so forward = user_vectors @ item_vectors().T is the base's scores plus the prior, and export (one MatMul against the
item matrix), the HNSW index, quantization, evaluation and serving take the wrapped model as they take the base.
`recent_counts` and `beta` are buffers: the model file carries them, and models/model_file.py rebuilds the wrapper
when the config has recent_prior_days > 0 (a training checkpoint holds the base alone: the prior is fitted once the
training is over, by models/train.py on rank 0, just before model.pt is written).

Choosing beta (fit_recent_prior): the trained base scores the valid split as models/evaluate.py scores test (full
ranking, the user's train items excluded, relevant = valid items not in train; `uses_time` families get as query
time the user's first valid interaction); the prior's counts are the train interactions in the D days before the
valid window; beta = the grid value (`recent_prior_betas`, default DEFAULT_BETAS; 0 is always added) with the best
mean NDCG@10 over those users, the smallest on a tie. With 0 in the grid the prior is never worse than the base on
valid. The counts that ship are then the train+valid interactions in the D days before the test window, the same
window length, so beta sees counts of the scale it was chosen with.
Window ends: under the global time split (protocol `time`) the manifest's split.validStart and split.testStart (else
the first valid ts and the last train+valid ts + 1 s). Under the per-user protocols (loo, random: no common window)
the global last D days before the last train ts + 1 s (selection) and before the last train+valid ts + 1 s (what
ships), a deliberate simplification: a served model has one set of counts, not one per user.
Counts are frozen when the model is trained: a model served long after its data ends has a stale prior.

The result line of models/train.py gains "recent_prior": {"days", "beta", "valid_ndcg@10", "base_valid_ndcg@10",
"grid": [{"beta", "ndcg@10"}], "n_valid_users", "selection_window": [start, end), "window": [start, end) (epoch s),
"window_interactions"} (the TypeScript side does not read it).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from models.continuous_time import user_scores
from models.data import Interactions, UserSequences, read_manifest, read_split
from models.metrics import ndcg_at_k, rank_order

# Log-spaced from "barely a tie-break" to "the prior dominates" (log1p counts are O(1..6); base scores range from
# ~0.01 (iALS) to ~10 (softmax-trained logits)), so one grid fits every family's score scale.
DEFAULT_BETAS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
SELECTION_K = 10
SCORE_CELLS_PER_BATCH = 2**22  # like models/evaluate.py: users per batch = this / n_items


class RecentPrior(nn.Module):
    """A trained retrieval model plus beta * log1p(recent_counts) on every item's score (the module docstring)."""

    def __init__(self, base: nn.Module, recent_counts: Optional[Sequence[float] | np.ndarray | torch.Tensor] = None,
                 beta: float = 0.0):
        super().__init__()
        if not (hasattr(base, "user_vectors") and hasattr(base, "item_vectors")):
            raise TypeError(f"a recent-popularity prior needs a single-stage retrieval family (user_vectors and "
                            f"item_vectors), got {type(base).__name__}")
        self.base = base
        self.family = getattr(base, "family", type(base).__name__)
        self.n_items, self.history_len = int(base.n_items), int(base.history_len)
        self.uses_time = bool(getattr(base, "uses_time", False))
        counts = (torch.zeros(self.n_items) if recent_counts is None
                  else torch.as_tensor(np.asarray(recent_counts, dtype=np.float32)))
        if counts.shape != (self.n_items,) or not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
            raise ValueError(f"recent_counts must be {self.n_items} finite counts >= 0, got shape "
                             f"{tuple(counts.shape)}")
        if not (0 <= beta < float("inf")):
            raise ValueError(f"beta must be finite and >= 0, got {beta}")
        self.register_buffer("recent_counts", counts.to(torch.float32))
        self.register_buffer("beta", torch.tensor(float(beta), dtype=torch.float32))

    def user_vectors(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The base's user vectors (same inputs) with beta appended: (batch, d + 1)."""
        u = self.base.user_vectors(*inputs)
        return torch.cat([u, torch.ones_like(u[:, :1]) * self.beta], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """The base's item vectors with log1p(recent count) appended: (n_items, d + 1)."""
        v = self.base.item_vectors()
        return torch.cat([v, torch.log1p(self.recent_counts).to(v.dtype).unsqueeze(1)], dim=1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(*inputs) @ self.item_vectors().T


def window_ends(data_dir: str, train: Interactions, valid: Interactions) -> tuple[float, float]:
    """(end of the selection window, end of the window that ships), epoch s (the module docstring)."""
    with open(os.path.join(data_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    block = manifest.get("protocol")
    protocol = (block.get("name") if isinstance(block, dict) else None) or "time"
    last_train = float(train.ts.max()) + 1 if len(train) else 0.0
    last_seen = max(last_train, float(valid.ts.max()) + 1 if len(valid) else 0.0)
    if protocol != "time":
        return last_train, last_seen
    split = manifest.get("split") if isinstance(manifest.get("split"), dict) else {}
    valid_start = split.get("validStart", float(valid.ts.min()) if len(valid) else last_train)
    return float(valid_start), float(split.get("testStart", last_seen))


def window_counts(history: Interactions, n_items: int, days: float, end: float) -> np.ndarray:
    """Per item (n_items,), the `history` rows with ts in [end - days, end): models/evaluate.py's RecentPopularity."""
    from models.evaluate import RecentPopularity  # here: models.evaluate imports model_file, which imports this

    return RecentPopularity(history, n_items, days).counts(np.array([end], dtype=np.float64))[0]


def valid_ndcg_grid(base: nn.Module, train: Interactions, valid: Interactions, n_users: int,
                    prior: np.ndarray, betas: Sequence[float], k: int = SELECTION_K) -> tuple[np.ndarray, int]:
    """Mean NDCG@k on the valid split of base + beta * prior for each beta (train as the history, its items
    excluded, relevant = valid items not in it), and the number of users it averages over."""
    from models.evaluate import pair_mask  # here: see window_counts

    n_items = base.n_items
    seen, targets = UserSequences(train, n_users), UserSequences(valid, n_users)
    users_all = np.flatnonzero(targets.end > targets.start)
    totals, n_users_scored = np.zeros(len(betas)), 0
    prior32 = prior.astype(np.float32)[None, :]
    batch = max(1, SCORE_CELLS_PER_BATCH // n_items)
    for lo in range(0, len(users_all), batch):
        users = users_all[lo : lo + batch]
        shape = (len(users), n_items)
        excluded = pair_mask(shape, *seen.user_item_pairs(users))
        relevant = pair_mask(shape, *targets.user_item_pairs(users)) & ~excluded
        keep = relevant.any(axis=1)
        users, excluded, relevant = users[keep], excluded[keep], relevant[keep]
        if len(users) == 0:
            continue
        query_time_ms = targets.ts[targets.start[users]] * 1000
        with torch.inference_mode():
            scores = user_scores(base, seen, users, query_time_ms).numpy()
        for j, beta in enumerate(betas):
            ranked_scores = np.where(excluded, -np.inf, scores + np.float32(beta) * prior32)
            ranked = np.take_along_axis(relevant, rank_order(ranked_scores), axis=1)
            totals[j] += ndcg_at_k(ranked, k).sum()
        n_users_scored += len(users)
    return totals / max(n_users_scored, 1), n_users_scored


def beta_grid(config: Any) -> list[float]:
    """The configured grid (or DEFAULT_BETAS) with 0 added, sorted, without repeats."""
    values = DEFAULT_BETAS if config.recent_prior_betas is None else config.recent_prior_betas
    return sorted({0.0, *(float(b) for b in values)})


def fit_recent_prior(base: nn.Module, config: Any, data_dir: str) -> tuple[RecentPrior, dict[str, Any]]:
    """Choose beta on the valid split and wrap `base` with the counts that ship (the module docstring); returns the
    wrapped model (eval mode) and the result line's `recent_prior` block."""
    base.eval()
    days = float(config.recent_prior_days)
    manifest = read_manifest(data_dir)
    train, valid = (read_split(data_dir, s, manifest) for s in ("train", "valid"))
    select_end, ship_end = window_ends(data_dir, train, valid)
    betas = beta_grid(config)
    selection = window_counts(train, manifest.n_items, days, select_end)
    ndcg, n_users = valid_ndcg_grid(base, train, valid, manifest.n_users, np.log1p(selection), betas)
    best = int(np.argmax(ndcg)) if n_users else 0  # argmax: the first (smallest) beta of a tie; 0 without users
    shipped = window_counts(Interactions.concat(train, valid), manifest.n_items, days, ship_end)
    model = RecentPrior(base, shipped.astype(np.float32), betas[best]).eval()
    seconds = days * 86_400
    info = {
        "days": days, "beta": betas[best], f"valid_ndcg@{SELECTION_K}": float(ndcg[best]) if n_users else None,
        f"base_valid_ndcg@{SELECTION_K}": float(ndcg[0]) if n_users else None,
        "grid": [{"beta": b, f"ndcg@{SELECTION_K}": float(x)} for b, x in zip(betas, ndcg)] if n_users else [],
        "n_valid_users": n_users, "selection_window": [select_end - seconds, select_end],
        "window": [ship_end - seconds, ship_end], "window_interactions": int(shipped.sum()),
    }
    return model, info


def with_recent_prior(config: Any, model: nn.Module, data_dir: str) -> tuple[nn.Module, dict[str, Any]]:
    """For models/train.py: the model wrapped in its prior and {"recent_prior": block} when the config turns the
    prior on (recent_prior_days > 0); the model itself and {} otherwise."""
    if config.recent_prior_days <= 0:
        return model, {}
    wrapped, info = fit_recent_prior(model, config, data_dir)
    return wrapped, {"recent_prior": info}
