"""Per-stage metrics of a multi-stage model (the `cascade` family, models/cascade.py), for models/evaluate.py.

A model with `stage_rankings(history)` gives, per stage, full-catalogue scores ordered as the cascade's list after
that stage: `recall` (the recall stage alone), `rank` (recall -> rank) and `final` (recall -> rank -> re-rank, the
same order as the model's forward). Each is ranked with evaluate's exclusions (the user's history items) and measured
on the same users and relevant items as the model, at the cut-offs that tell the stages apart:
  recall@N   the share of the test items the recall stage passes on (N = recall_n: nothing outside can be ranked)
  recall@M   the share inside the re-ranker's input (M = rerank_m)
  ndcg@k     the list's quality at evaluate's primary k; recall's ndcg@k is the recall stage alone as a recommender
Report section `stages` (see `StageMetrics.report`): {"recall_n", "rerank_m", "k", "metric_names",
"all": StagePopulation, "warm": StagePopulation} where warm = users with a non-empty history (cold users get the
same lists from every stage's history-blind fallback), StagePopulation = {"n_users", "stages": {stage: {metric:
{"point","lo","hi"}}}, "final_vs_recall": {metric: Difference}}, with evaluate's bootstrap (users resampled, paired
across stages; Difference as in models/evaluate.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.bootstrap import Bootstrap
from models.metrics import metrics_from_ranked, rank_order

STAGES = ("recall", "rank", "final")


class StageMetrics:
    """Collects per-user stage metrics batch by batch (`add`), then `report`."""

    def __init__(self, model: Any, k: int):
        self.model, self.k = model, k
        self.recall_n, self.rerank_m = int(model.recall_n), int(model.rerank_m)
        self.ks = sorted({k, self.recall_n, self.rerank_m})
        self.names = [f"recall@{self.recall_n}", f"recall@{self.rerank_m}", f"ndcg@{k}"]
        self.rows: dict[str, list[np.ndarray]] = {s: [] for s in STAGES}
        self.warm: list[np.ndarray] = []

    def add(self, history: np.ndarray, excluded: np.ndarray, relevant: np.ndarray) -> None:
        """history (B, L) model input; excluded, relevant bool (B, n_items) as evaluate builds them."""
        with torch.inference_mode():
            stages = self.model.stage_rankings(torch.from_numpy(history))
        self.warm.append((history > 0).any(axis=1))
        for stage in STAGES:
            scores = np.where(excluded, -np.inf, stages[stage].numpy())
            values = metrics_from_ranked(np.take_along_axis(relevant, rank_order(scores), axis=1), self.ks)
            self.rows[stage].append(np.stack([values[m] for m in self.names], axis=1))

    def report(self, n_resamples: int, seed: int) -> dict[str, Any]:
        out: dict[str, Any] = {"recall_n": self.recall_n, "rerank_m": self.rerank_m, "k": self.k,
                               "metric_names": self.names}
        arrays = {s: np.concatenate(self.rows[s]) if self.rows[s] else np.zeros((0, len(self.names)))
                  for s in STAGES}
        warm = np.concatenate(self.warm) if self.warm else np.zeros(0, dtype=bool)
        for name, mask in (("all", np.ones(len(warm), dtype=bool)), ("warm", warm)):
            out[name] = self._population({s: a[mask] for s, a in arrays.items()}, n_resamples, seed)
        return out

    def _population(self, arrays: dict[str, np.ndarray], n_resamples: int, seed: int) -> dict[str, Any]:
        n = len(arrays["final"])
        out: dict[str, Any] = {"n_users": n, "stages": {}, "final_vs_recall": {}}
        if n == 0:
            return out
        boot = Bootstrap(n, n_resamples=n_resamples, seed=seed)
        for stage in STAGES:
            out["stages"][stage] = dict(zip(self.names, boot.intervals(arrays[stage])))
        out["final_vs_recall"] = dict(zip(self.names, boot.differences(arrays["final"], arrays["recall"])))
        return out
