"""Full-ranking evaluation of a model on the test split, against a popularity baseline. No sampled negatives.

    OMP_NUM_THREADS=1 python -m models.evaluate --data-dir D --model O/model.pt --out O/eval.json [--k 10]

For each user with test interactions: the history is their train+valid interactions in time order (the last
`history_len` are the model input); every item is scored, the user's history items are excluded, and the rest are
ranked. Relevant = the user's test items not in their history (users left with none are skipped and counted).
The popularity baseline ranks items by train-split interaction count, with the same exclusions.
Metrics (averaged over evaluated users): recall@k, ndcg@k, hr@k, mrr (full ranking); see models/metrics.py.

stdout (JSON lines):
  {"event":"result","metrics":{"model":{"recall@10":..,"ndcg@10":..,"hr@10":..,"mrr":..},"popularity":{...}},
   "n_users":N,"n_cold_users":C,"n_skipped_users":S,"k":10,"report_path":"/abs/FILE.json"}
The report file holds the same plus slices (cold = empty history, warm), eval_seconds and the model's description.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np
import torch

from models.data import DataError, Interactions, UserSequences, read_manifest, read_split
from models.families import load_model
from models.jsonl import ArgumentParser, UsageError, emit, run
from models.metrics import metric_names, per_user_metrics

SCORE_CELLS_PER_BATCH = 2**22  # users per batch = this / n_items: bounds the working set (~150 MB at 4M cells)


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.evaluate", description="Full-ranking evaluation (JSON lines on stdout).")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--model", required=True, help="model.pt (or an epoch checkpoint)")
    p.add_argument("--out", required=True, help="report JSON file to write")
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    return args


def pair_mask(shape: tuple[int, int], rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, items - 1] = True  # column j is item j + 1
    return mask


def evaluate(args: Any) -> dict[str, Any]:
    model, meta = load_model(args.model)
    manifest = read_manifest(args.data_dir)
    if model.n_items != manifest.n_items:
        raise DataError(f"model was trained on {model.n_items} items, dataset has {manifest.n_items}")
    train, valid, test = (read_split(args.data_dir, s, manifest) for s in ("train", "valid", "test"))
    seen = UserSequences(Interactions.concat(train, valid), manifest.n_users)  # train ts < valid ts: still in order
    targets = UserSequences(test, manifest.n_users)
    test_users = np.flatnonzero(targets.end > targets.start)
    popularity = np.bincount(train.item, minlength=manifest.n_items + 1)[1:].astype(np.float32)

    names = metric_names(args.k)
    per_user: dict[str, dict[str, list[np.ndarray]]] = {m: {n: [] for n in names} for m in ("model", "popularity")}
    cold_flags: list[np.ndarray] = []
    skipped = 0
    batch = max(1, SCORE_CELLS_PER_BATCH // manifest.n_items)
    for lo in range(0, len(test_users), batch):
        users = test_users[lo : lo + batch]
        shape = (len(users), manifest.n_items)
        excluded = pair_mask(shape, *seen.user_item_pairs(users))
        relevant = pair_mask(shape, *targets.user_item_pairs(users)) & ~excluded
        keep = relevant.any(axis=1)
        skipped += int((~keep).sum())
        users, excluded, relevant = users[keep], excluded[keep], relevant[keep]
        if len(users) == 0:
            continue
        cold_flags.append(seen.end[users] == seen.start[users])

        with torch.inference_mode():
            scores = model(torch.from_numpy(seen.user_histories(users, model.history_len))).numpy()
        for name, raw in (("model", scores), ("popularity", np.broadcast_to(popularity, scores.shape))):
            ranked_scores = np.where(excluded, -np.inf, raw)
            for metric, values in per_user_metrics(ranked_scores, relevant, args.k).items():
                per_user[name][metric].append(values)

    if not cold_flags:
        raise DataError(f"{args.data_dir}: no test user has a test item outside their history; nothing to evaluate")
    cold = np.concatenate(cold_flags)
    arrays = {m: {n: np.concatenate(v) for n, v in d.items()} for m, d in per_user.items()}

    def averages(mask: np.ndarray) -> dict[str, Any]:
        return {m: {n: float(a[mask].mean()) if mask.any() else None for n, a in d.items()} for m, d in arrays.items()}

    return {
        "k": args.k,
        "n_users": int(len(cold)),
        "n_cold_users": int(cold.sum()),
        "n_skipped_users": skipped,
        "metrics": averages(np.ones_like(cold)),
        "slices": {
            "cold": {"n_users": int(cold.sum()), **averages(cold)},
            "warm": {"n_users": int((~cold).sum()), **averages(~cold)},
        },
        "model": {"path": os.path.abspath(args.model), "family": meta["family"], "n_items": model.n_items,
                  "history_len": model.history_len, "config": meta["config"]},
        "data_dir": os.path.abspath(args.data_dir),
    }


def write_json_atomic(obj: Any, path: str) -> str:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    report = evaluate(args)
    report["eval_seconds"] = time.monotonic() - t0
    path = write_json_atomic(report, args.out)
    emit("result", metrics=report["metrics"], n_users=report["n_users"], n_cold_users=report["n_cold_users"],
         n_skipped_users=report["n_skipped_users"], k=args.k, report_path=path)


if __name__ == "__main__":
    run(main)
