"""Full-ranking top-k metrics as pure numpy functions.

Convention: a batch of users is a score matrix (users, items) plus a boolean relevance matrix of the same shape.
Items a user must not be recommended (already seen) get score -inf and are never relevant. Ties are broken by item
column, lowest first (a stable sort), so results are deterministic, e.g. for the popularity baseline's many ties.
"""

from __future__ import annotations

import numpy as np


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Columns sorted by descending score, ties by ascending column. Shape of `scores`."""
    return np.argsort(-scores, axis=1, kind="stable")


def ranked_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """relevant[u, order[u, r]]: whether the item at rank r (0-based) of user u is relevant."""
    return np.take_along_axis(relevant, rank_order(scores), axis=1)


def recall_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top k / number of relevant items, per user (0 for users without relevant items)."""
    n_relevant = ranked.sum(axis=1)
    return ranked[:, :k].sum(axis=1) / np.maximum(n_relevant, 1)


def hit_rate_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """1 if any relevant item is in the top k, per user."""
    return ranked[:, :k].any(axis=1).astype(np.float64)


def ndcg_at_k(ranked: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k: DCG = sum over hits at rank r (1-based) of 1/log2(r+1); the ideal DCG puts
    min(n_relevant, k) hits at the top."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = ranked[:, :k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ideal_hits = np.minimum(ranked.sum(axis=1), k)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_hits]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def mrr(ranked: np.ndarray) -> np.ndarray:
    """1 / (1-based rank of the first relevant item in the full ranking), per user; 0 without relevant items."""
    has_hit = ranked.any(axis=1)
    first = ranked.argmax(axis=1) + 1
    return np.where(has_hit, 1.0 / first, 0.0)


def metric_names(k: int) -> list[str]:
    return [f"recall@{k}", f"ndcg@{k}", f"hr@{k}", "mrr"]


def metric_names_multi(ks: list[int]) -> list[str]:
    """recall/ndcg/hr at each k (in the order of `ks`), then mrr once."""
    return [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hr")] + ["mrr"]


def metrics_from_ranked(ranked: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Per-user metrics at several cut-offs from one ranked relevance matrix (one sort serves every k)."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"], out[f"ndcg@{k}"], out[f"hr@{k}"] = (recall_at_k(ranked, k), ndcg_at_k(ranked, k),
                                                                 hit_rate_at_k(ranked, k))
    out["mrr"] = mrr(ranked)
    return out


def per_user_metrics(scores: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """All metrics for a batch of users; average the arrays over users to report."""
    ranked = ranked_relevance(scores, relevant)
    return dict(zip(metric_names(k), (recall_at_k(ranked, k), ndcg_at_k(ranked, k), hit_rate_at_k(ranked, k),
                                      mrr(ranked))))
