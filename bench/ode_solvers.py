"""The ODE solver table's measurements (bench/ode-solvers.ts trains and exports the models, then calls this): for
each trained continuous-time model, full-ranking NDCG@10 on the test split with clean and with noisy timestamps,
and single-request latency of its exported ONNX graph.

    OMP_NUM_THREADS=1 PYTHONPATH=. ~/.cache/recsys/venv/bin/python bench/ode_solvers.py --data-dir D \
        --models '[{"label":"gru","model":"O1/model.pt","onnx":"O1/model.onnx"}, ...]' [--runs 1000] [--draws 5]

Quality: the protocol of models/evaluate.py (history = train+valid, the last history_len items; history items
excluded; relevant = test items not in the history; users without one skipped; query_time = the user's first test
interaction), computed here because the noise is injected into the model's inputs. Conditions:
  clean      the dataset's timestamps
  jitter     each gap (between consecutive history events, and from the last one to the query) multiplied by an
             independent lognormal factor exp(sigma * N(0, 1)), sigma 0.5 and 1.0; the first event keeps its time and
             the rest are rebuilt from the jittered gaps (event order is kept)
  shuffled   the user's gaps (the query's included) in a random order
  no time    every gap 0 (all events and the query at the first event's time): what is left without time
Noisy conditions average each user's NDCG over --draws noise draws. Every condition is scored on the same users, so
differences are paired: intervals are models/bootstrap.py's (95% percentile, users resampled). Warm users (with a
history) are the only ones noise can change; cold users get h0 from every model and condition.
Latency: onnxruntime, 1 thread, batch 1, the test users' real inputs; requests interleave the models in rotating
order (models/quantize.py's paired_latency), so machine load hits all alike. p50/p99 in ms.

stdout: one JSON line {"event":"result","n_users":N,"n_warm":W,"models":[{"label", "ndcg": {condition: Interval},
"ndcg_warm": {...}, "drop_warm": {condition: Difference (noisy - clean, warm users)}, "vs_first": {condition:
Difference (this model - the first model, all users)}, "p50_ms", "p99_ms"}], "conditions": [...]}
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from models.bootstrap import Bootstrap
from models.data import Interactions, UserSequences, read_manifest, read_split
from models.evaluate import pair_mask
from models.metrics import metrics_from_ranked, rank_order
from models.model_file import load_model
from models.quantize import paired_latency, session

CONDITIONS = ("clean", "jitter 0.5", "jitter 1.0", "shuffled", "no time")
K = 10


def perturb(timestamps: np.ndarray, query: np.ndarray, condition: str, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of (timestamps (B, L) epoch ms, 0 at padding, left-padded; query (B,)); see the docstring."""
    if condition == "clean":
        return timestamps, query
    real = timestamps > 0
    out_ts, out_q = timestamps.copy(), query.copy()
    for row in range(len(timestamps)):
        times = timestamps[row][real[row]]
        if len(times) == 0:
            continue  # an empty history: no gaps (the model ignores the query time then)
        gaps = np.diff(np.append(times, query[row])).astype(np.float64)  # the last one is the query's gap
        if condition == "no time":
            gaps = np.zeros_like(gaps)
        elif condition == "shuffled":
            gaps = rng.permutation(gaps)
        else:
            sigma = float(condition.split()[1])
            gaps = gaps * np.exp(sigma * rng.standard_normal(len(gaps)))
        rebuilt = times[0] + np.concatenate([[0], np.cumsum(np.round(gaps).astype(np.int64))])
        out_ts[row][real[row]] = rebuilt[:-1]
        out_q[row] = rebuilt[-1]
    return out_ts, out_q


def per_user_ndcg(model: torch.nn.Module, history: np.ndarray, timestamps: np.ndarray, query: np.ndarray,
                  excluded: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        scores = model(*(torch.from_numpy(a) for a in (history, timestamps, query))).numpy()
    ranked = np.where(excluded, -np.inf, scores)
    return metrics_from_ranked(np.take_along_axis(relevant, rank_order(ranked), axis=1), [K])[f"ndcg@{K}"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models", required=True, help='JSON list of {"label","model","onnx"}')
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    specs = json.loads(args.models)

    manifest = read_manifest(args.data_dir)
    train, valid, test = (read_split(args.data_dir, s, manifest) for s in ("train", "valid", "test"))
    seen = UserSequences(Interactions.concat(train, valid), manifest.n_users)
    targets = UserSequences(test, manifest.n_users)
    users = np.flatnonzero(targets.end > targets.start)
    shape = (len(users), manifest.n_items)
    excluded = pair_mask(shape, *seen.user_item_pairs(users))
    relevant = pair_mask(shape, *targets.user_item_pairs(users)) & ~excluded
    keep = relevant.any(axis=1)
    users, excluded, relevant = users[keep], excluded[keep], relevant[keep]
    warm = seen.end[users] > seen.start[users]
    query = targets.ts[targets.start[users]] * 1000

    models = [load_model(s["model"])[0] for s in specs]
    history_len = models[0].history_len
    if any(m.history_len != history_len or not getattr(m, "uses_time", False) for m in models):
        raise SystemExit("every model must be a uses_time family with the same history_len")
    history = seen.user_histories(users, history_len)
    timestamps = seen.user_history_times_ms(users, history_len)

    boot = Bootstrap(len(users), n_resamples=1000, seed=args.seed)
    boot_warm = Bootstrap(int(warm.sum()), n_resamples=1000, seed=args.seed)
    results: list[dict[str, Any]] = []
    first: np.ndarray | None = None
    for spec, model in zip(specs, models):
        ndcg: dict[str, np.ndarray] = {}
        for condition in CONDITIONS:
            draws = 1 if condition in ("clean", "no time") else args.draws
            rng = np.random.default_rng(args.seed)  # the same noise for every model
            ndcg[condition] = np.mean([per_user_ndcg(model, history, *perturb(timestamps, query, condition, rng),
                                                     excluded, relevant) for _ in range(draws)], axis=0)
        stacked = np.stack([ndcg[c] for c in CONDITIONS], axis=1)
        intervals = boot.intervals(stacked)
        warm_intervals = boot_warm.intervals(stacked[warm])
        noisy = stacked[warm][:, 1:]
        drops = boot_warm.differences(noisy, np.repeat(stacked[warm][:, :1], noisy.shape[1], axis=1))
        first = stacked if first is None else first
        versus = boot.differences(stacked, first)  # paired: the same users and resamples
        results.append({"label": spec["label"], "ndcg": dict(zip(CONDITIONS, intervals)),
                        "ndcg_warm": dict(zip(CONDITIONS, warm_intervals)),
                        "drop_warm": dict(zip(CONDITIONS[1:], drops)),
                        "vs_first": dict(zip(CONDITIONS, versus))})

    sessions = {s["label"]: session(s["onnx"]) for s in specs}
    feeds = [{"history": history[i : i + 1], "timestamps": timestamps[i : i + 1], "query_time": query[i : i + 1]}
             for i in range(len(users))]
    samples = paired_latency(sessions, feeds, args.runs, args.warmup)
    for r in results:
        r["p50_ms"] = float(np.percentile(samples[r["label"]], 50))
        r["p99_ms"] = float(np.percentile(samples[r["label"]], 99))
    print(json.dumps({"event": "result", "n_users": int(len(users)), "n_warm": int(warm.sum()),
                      "history_len": history_len, "conditions": list(CONDITIONS), "models": results,
                      "latency": {"runs": args.runs, "warmup": args.warmup, "batch": 1, "threads": 1}}), flush=True)


if __name__ == "__main__":
    main()
