"""Full-ranking evaluation of a model on the test split against a popularity baseline and, optionally, the current
champion; per-slice metrics with bootstrap confidence intervals, so promotion gates decide on intervals, not on
point estimates. No sampled negatives.

    OMP_NUM_THREADS=1 python -m models.evaluate --data-dir D --model O/model.pt --out O/eval.json [--k 10] \
        [--extra-k 50] [--baseline-model C/model.pt --baseline-data-dir D_OLD] [--bootstrap 1000] [--seed 0] \
        [--min-slice-users 20] [--table-out O/eval.md]

Protocol. For each user with test interactions: the history is their train+valid interactions in time order (the
last `history_len` are the model input); every item is scored, the user's history items are excluded, and the rest
are ranked. Relevant = the user's test items not in their history (users left with none are skipped and counted).
Rankers:
  model       the model under evaluation.
  popularity  train-split interaction counts, with the same exclusions.
  baseline    (with --baseline-model) a second model, typically the `champion`, possibly trained on another dataset
              version: items are matched by raw item id (items.parquet of both versions; identity when both are
              the same directory). Its input history is the user's history in *this* dataset, mapped to its
              indices (items it does not know are dropped), cut to its own history_len; items of this catalogue it
              does not know score -inf. Same users, same test items, same exclusions: differences are paired.
Metrics per user: recall@k, ndcg@k, hr@k for k in {--k} + --extra-k, and mrr over the full ranking
(models/metrics.py); the reported value is the mean over users. Catalogue coverage@k (share of catalogue items in
some user's top k) and novelty@k (mean of -log2 p(item) over recommended items, p = (train count + 1) / (train
interactions + n_items)) at the primary k. Slices: models/slices.py. Intervals: models/bootstrap.py (percentile,
users resampled with replacement, the same resamples for every ranker of a population so differences are paired;
each slice is resampled on its own).

stdout (JSON lines), the final line:
  {"event":"result","k":10,"ks":[10,50],"metrics":{"model":{"recall@10":..,..,"mrr":..},"popularity":{..},
   "baseline":{..}?},"n_users":N,"n_cold_users":C,"n_skipped_users":S,"report_path":"/abs/eval.json",
   "table_path":"/abs/eval.md","intervals":<overall intervals>,"differences":<overall differences>,
   "coverage":{ranker: share},"novelty":{ranker: bits},"n_slices":M,"small_slices":[name, ...]}

Report file (JSON):
  k, ks, metric_names, rankers ["model","popularity"(,"baseline")], n_users, n_cold_users, n_skipped_users,
  metrics      {ranker: {metric: mean}}                                     (point estimates, all users)
  overall      Population (below) over all evaluated users
  slices       {"activity=cold"|...: Population + "dimension", "value"}
  slice_definitions  thresholds and rules of each slice dimension (models/slices.py)
  coverage     {ranker: share of catalogue items in some top-k}      novelty  {ranker: mean -log2 p, bits}
  bootstrap    {"n_resamples", "confidence", "seed", "method", "min_slice_users"}
  model        {path, family, n_items, history_len, config}
  baseline     null | {path, data_dir, family, n_items, history_len, config, n_items_mapped, n_items_unknown}
  data_dir, eval_seconds, table_path
  Population = {"n_users": n, "small": n < min_slice_users,
                "intervals": {ranker: {metric: {"point","lo","hi"}}},
                "differences": {"vs_popularity": {metric: Difference}, "vs_baseline": {metric: Difference}?}}
  Difference = {"point","lo","hi" (model - other, absolute), "rel_point","rel_lo","rel_hi" (model/other - 1;
               null where the other's mean is not positive, on the sample or on some resample)}
  A population without users has empty intervals and differences.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from models.bootstrap import Bootstrap
from models.data import DataError, Interactions, UserSequences, read_manifest, read_split
from models.model_file import load_model
from models.jsonl import ArgumentParser, UsageError, emit, run
from models.metrics import metric_names, metric_names_multi, metrics_from_ranked, per_user_metrics, rank_order
from models.slices import POPULARITY_CLASSES, SliceInputs, item_popularity_classes, slice_masks

SCORE_CELLS_PER_BATCH = 2**22  # users per batch = this / n_items: bounds the working set (~150 MB at 4M cells)
RANKER_OTHERS = {"popularity": "vs_popularity", "baseline": "vs_baseline"}
__all__ = ["evaluate", "item_index_map", "main", "metric_names", "pair_mask", "per_user_metrics"]  # stable imports


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.evaluate", description="Full-ranking evaluation (JSON lines on stdout).")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--model", required=True, help="model.pt (or an epoch checkpoint)")
    p.add_argument("--out", required=True, help="report JSON file to write")
    p.add_argument("--k", type=int, default=10, help="primary cut-off (coverage, novelty, the table)")
    p.add_argument("--extra-k", default="50", help="more cut-offs, comma-separated ('' for none)")
    p.add_argument("--baseline-model", default=None, help="a second model to compare with (the champion)")
    p.add_argument("--baseline-data-dir", default=None, help="the dataset version the baseline was trained on")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--min-slice-users", type=int, default=20, help="slices with fewer users are flagged small")
    p.add_argument("--table-out", default=None, help="markdown table (default: --out with a .md suffix)")
    args = p.parse_args(argv)
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    try:
        extra = [int(x) for x in args.extra_k.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--extra-k must be comma-separated integers, got {args.extra_k!r}") from None
    if any(x < 1 for x in extra):
        raise UsageError(f"--extra-k values must be >= 1, got {args.extra_k!r}")
    args.ks = sorted({args.k, *extra})
    if args.bootstrap < 1:
        raise UsageError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    if args.min_slice_users < 0:
        raise UsageError(f"--min-slice-users must be >= 0, got {args.min_slice_users}")
    if args.baseline_data_dir is not None and args.baseline_model is None:
        raise UsageError("--baseline-data-dir needs --baseline-model")
    if args.table_out is None:
        root, _ = os.path.splitext(args.out)
        args.table_out = root + ".md"
    return args


def pair_mask(shape: tuple[int, int], rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, items - 1] = True  # column j is item j + 1
    return mask


def read_item_ids(data_dir: str, n_items: int) -> np.ndarray:
    """Raw item id of each item index (entry 0 is padding): items.parquet of the dataset version."""
    path = os.path.join(data_dir, "items.parquet")
    if not os.path.exists(path):
        raise DataError(f"missing {path}: mapping items between dataset versions needs the raw item ids")
    table = pq.read_table(path, columns=["item_idx", "item_id"])
    idx = table.column("item_idx").to_numpy().astype(np.int64)
    ids = np.array(table.column("item_id").to_pylist(), dtype=object)
    if len(idx) != n_items or set(idx.tolist()) != set(range(1, n_items + 1)):
        raise DataError(f"{path}: expected item_idx 1..{n_items} once each, got {len(idx)} rows")
    out = np.empty(n_items + 1, dtype=object)
    out[idx] = ids
    return out


def item_index_map(data_dir: str, n_items: int, other_dir: str, other_n_items: int) -> np.ndarray:
    """For each item index of `data_dir` (0..n_items), the index of the same raw item in `other_dir`, 0 if it has
    none. The identity when both are the same directory."""
    if os.path.realpath(data_dir) == os.path.realpath(other_dir):
        return np.arange(n_items + 1, dtype=np.int64)
    ids, other_ids = read_item_ids(data_dir, n_items), read_item_ids(other_dir, other_n_items)
    lookup = {item_id: i for i, item_id in enumerate(other_ids) if i > 0}
    return np.array([0] + [lookup.get(item_id, 0) for item_id in ids[1:]], dtype=np.int64)


def test_window_start(data_dir: str, test: Interactions) -> float:
    """The manifest's split.testStart, else the first test timestamp."""
    try:
        with open(os.path.join(data_dir, "manifest.json"), encoding="utf-8") as f:
            return float(json.load(f)["split"]["testStart"])
    except (KeyError, TypeError, ValueError):
        return float(test.ts.min())


class Baseline:
    """A second model scored in this dataset's item space (see the module docstring)."""

    def __init__(self, model_path: str, data_dir: str, own_dir: str, n_items: int, seen: Interactions,
                 n_users: int):
        self.model, self.meta = load_model(model_path)
        base_manifest = read_manifest(data_dir)
        if self.model.n_items != base_manifest.n_items:
            raise DataError(f"baseline model {model_path} was trained on {self.model.n_items} items, its dataset "
                            f"{data_dir} has {base_manifest.n_items}")
        self.to_base = item_index_map(own_dir, n_items, data_dir, base_manifest.n_items)
        mapped = self.to_base[seen.item]
        keep = mapped > 0
        self.seen = UserSequences(Interactions(seen.user[keep], mapped[keep], seen.ts[keep]), n_users)
        self.known = np.flatnonzero(self.to_base[1:] > 0)  # columns of this catalogue the baseline can score
        self.describe = {"path": os.path.abspath(model_path), "data_dir": os.path.abspath(data_dir),
                         "family": self.meta["family"], "n_items": self.model.n_items,
                         "history_len": self.model.history_len, "config": self.meta["config"],
                         "n_items_mapped": int(len(self.known)), "n_items_unknown": int(n_items - len(self.known))}

    def scores(self, users: np.ndarray, n_items: int) -> np.ndarray:
        with torch.inference_mode():
            raw = self.model(torch.from_numpy(self.seen.user_histories(users, self.model.history_len))).numpy()
        out = np.full((len(users), n_items), -np.inf, dtype=raw.dtype)
        out[:, self.known] = raw[:, self.to_base[1:][self.known] - 1]
        return out


def population(boot_args: tuple[int, int], mask: np.ndarray, per_user: dict[str, np.ndarray],
               names: list[str], min_users: int) -> dict[str, Any]:
    """Intervals and paired differences of one population of users (see Population in the module docstring)."""
    n = int(mask.sum())
    out: dict[str, Any] = {"n_users": n, "small": n < min_users, "intervals": {}, "differences": {}}
    if n == 0:
        return out
    boot = Bootstrap(n, n_resamples=boot_args[0], seed=boot_args[1])
    rankers = list(per_user)
    stacked = np.concatenate([per_user[r][mask] for r in rankers], axis=1)
    flat = boot.intervals(stacked)
    for i, r in enumerate(rankers):
        out["intervals"][r] = dict(zip(names, flat[i * len(names) : (i + 1) * len(names)]))
    others = [r for r in rankers if r in RANKER_OTHERS]
    model = np.concatenate([per_user["model"][mask]] * len(others), axis=1)
    other = np.concatenate([per_user[r][mask] for r in others], axis=1)
    diffs = boot.differences(model, other)
    for i, r in enumerate(others):
        out["differences"][RANKER_OTHERS[r]] = dict(zip(names, diffs[i * len(names) : (i + 1) * len(names)]))
    return out


def evaluate(args: Any) -> dict[str, Any]:
    model, meta = load_model(args.model)
    manifest = read_manifest(args.data_dir)
    if model.n_items != manifest.n_items:
        raise DataError(f"model was trained on {model.n_items} items, dataset has {manifest.n_items}")
    n_items = manifest.n_items
    train, valid, test = (read_split(args.data_dir, s, manifest) for s in ("train", "valid", "test"))
    history = Interactions.concat(train, valid)  # train ts < valid ts: still in order
    seen = UserSequences(history, manifest.n_users)
    targets = UserSequences(test, manifest.n_users)
    test_users = np.flatnonzero(targets.end > targets.start)
    counts = np.bincount(train.item, minlength=n_items + 1)[1:]
    popularity = counts.astype(np.float32)
    classes = item_popularity_classes(counts)
    class_masks = np.stack([classes == c for c in range(len(POPULARITY_CLASSES))], axis=1)  # (items, 3)
    self_information = -np.log2((counts + 1.0) / (counts.sum() + n_items))
    last_ts = np.full(manifest.n_users, -np.inf)
    np.maximum.at(last_ts, history.user, history.ts.astype(np.float64))
    test_start = test_window_start(args.data_dir, test)

    baseline = None
    if args.baseline_model is not None:
        baseline = Baseline(args.baseline_model, args.baseline_data_dir or args.data_dir, args.data_dir, n_items,
                            history, manifest.n_users)
    rankers = ["model", "popularity"] + (["baseline"] if baseline else [])
    names = metric_names_multi(args.ks)
    per_user: dict[str, list[np.ndarray]] = {r: [] for r in rankers}
    recommended = {r: np.zeros(n_items, dtype=np.int64) for r in rankers}
    info_sum = {r: 0.0 for r in rankers}
    slots = {r: 0 for r in rankers}
    features: dict[str, list[np.ndarray]] = {"hist": [], "since": [], "cls": [], "new": []}
    skipped = 0
    batch = max(1, SCORE_CELLS_PER_BATCH // n_items)
    for lo in range(0, len(test_users), batch):
        users = test_users[lo : lo + batch]
        shape = (len(users), n_items)
        excluded = pair_mask(shape, *seen.user_item_pairs(users))
        relevant = pair_mask(shape, *targets.user_item_pairs(users)) & ~excluded
        keep = relevant.any(axis=1)
        skipped += int((~keep).sum())
        users, excluded, relevant = users[keep], excluded[keep], relevant[keep]
        if len(users) == 0:
            continue
        features["hist"].append(seen.end[users] - seen.start[users])
        features["since"].append(np.where(np.isfinite(last_ts[users]), test_start - last_ts[users], np.nan))
        features["cls"].append((relevant[:, :, None] & class_masks[None, :, :]).any(axis=1))
        features["new"].append((relevant & (counts == 0)[None, :]).any(axis=1))

        with torch.inference_mode():
            scores = model(torch.from_numpy(seen.user_histories(users, model.history_len))).numpy()
        raw_scores = {"model": scores, "popularity": np.broadcast_to(popularity, scores.shape)}
        if baseline:
            raw_scores["baseline"] = baseline.scores(users, n_items)
        for name, raw in raw_scores.items():
            ranked_scores = np.where(excluded, -np.inf, raw)
            order = rank_order(ranked_scores)
            values = metrics_from_ranked(np.take_along_axis(relevant, order, axis=1), args.ks)
            per_user[name].append(np.stack([values[m] for m in names], axis=1))
            top = order[:, : args.k]
            top = top[np.isfinite(np.take_along_axis(ranked_scores, top, axis=1))]  # never an excluded item
            recommended[name] += np.bincount(top, minlength=n_items)
            info_sum[name] += float(self_information[top].sum())
            slots[name] += int(top.size)

    if not features["hist"]:
        raise DataError(f"{args.data_dir}: no test user has a test item outside their history; nothing to evaluate")
    arrays = {r: np.concatenate(v) for r, v in per_user.items()}
    inputs = SliceInputs(np.concatenate(features["hist"]), np.concatenate(features["since"]),
                         np.concatenate(features["cls"]), np.concatenate(features["new"]))
    masks, definitions = slice_masks(inputs)
    n_users = len(inputs.history_len)
    boot_args = (args.bootstrap, args.seed)
    overall = population(boot_args, np.ones(n_users, dtype=bool), arrays, names, args.min_slice_users)
    slices = {}
    for name, mask in masks.items():
        dimension, value = name.split("=", 1)
        slices[name] = {"dimension": dimension, "value": value,
                        **population(boot_args, mask, arrays, names, args.min_slice_users)}
    return {
        "k": args.k,
        "ks": args.ks,
        "metric_names": names,
        "rankers": rankers,
        "n_users": n_users,
        "n_cold_users": int(masks["activity=cold"].sum()),
        "n_skipped_users": skipped,
        "metrics": {r: dict(zip(names, (float(x) for x in a.mean(axis=0)))) for r, a in arrays.items()},
        "overall": overall,
        "slices": slices,
        "slice_definitions": definitions,
        "coverage": {r: float((recommended[r] > 0).sum() / n_items) for r in rankers},
        "novelty": {r: info_sum[r] / slots[r] if slots[r] else None for r in rankers},
        "bootstrap": {"n_resamples": args.bootstrap, "confidence": 0.95, "seed": args.seed,
                      "method": "percentile; users resampled with replacement, paired across rankers; "
                                "each slice resampled on its own",
                      "min_slice_users": args.min_slice_users},
        "model": {"path": os.path.abspath(args.model), "family": meta["family"], "n_items": model.n_items,
                  "history_len": model.history_len, "config": meta["config"]},
        "baseline": baseline.describe if baseline else None,
        "data_dir": os.path.abspath(args.data_dir),
    }


def _fmt(iv: dict[str, Any] | None, signed: bool = False, rel: bool = False) -> str:
    if not iv:
        return "–"
    num = f"{iv['point']:+.4f}" if signed else f"{iv['point']:.4f}"
    text = f"{num} [{iv['lo']:+.4f}, {iv['hi']:+.4f}]" if signed else f"{num} [{iv['lo']:.4f}, {iv['hi']:.4f}]"
    if rel and iv.get("rel_point") is not None:
        text += f" ({100 * iv['rel_point']:+.1f}%)"
    return text


def markdown_table(report: dict[str, Any]) -> str:
    """A readable view of the report: the primary metric per slice with intervals and paired differences, then
    every metric overall."""
    k = report["k"]
    primary = f"ndcg@{k}"
    has_base = "baseline" in report["rankers"]
    b = report["bootstrap"]
    lines = [f"# Offline evaluation: {report['n_users']} test users, full ranking",
             "", f"Intervals: {round(100 * b['confidence'])}% percentile bootstrap, {b['n_resamples']} resamples "
             f"(seed {b['seed']}); differences are paired (model − other); `small` slices have fewer than "
             f"{b['min_slice_users']} users.", "", f"## {primary.upper()} by slice", ""]
    head = ["slice", "users", f"model {primary}", f"popularity {primary}", "Δ vs popularity"]
    if has_base:
        head += [f"baseline {primary}", "Δ vs baseline"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, pop in [("overall", report["overall"]), *report["slices"].items()]:
        iv, diff = pop["intervals"], pop["differences"]
        row = [name + (" (small)" if pop["small"] else ""), str(pop["n_users"]),
               _fmt(iv.get("model", {}).get(primary)), _fmt(iv.get("popularity", {}).get(primary)),
               _fmt(diff.get("vs_popularity", {}).get(primary), signed=True, rel=True)]
        if has_base:
            row += [_fmt(iv.get("baseline", {}).get(primary)),
                    _fmt(diff.get("vs_baseline", {}).get(primary), signed=True, rel=True)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## All metrics, all users", "", "| metric | " + " | ".join(report["rankers"]) + " |",
              "|" + "---|" * (1 + len(report["rankers"]))]
    for m in report["metric_names"]:
        lines.append(f"| {m} | " + " | ".join(_fmt(report["overall"]["intervals"][r][m]) for r in report["rankers"])
                     + " |")
    lines.append(f"| coverage@{k} | " + " | ".join(f"{report['coverage'][r]:.4f}" for r in report["rankers"]) + " |")
    lines.append(f"| novelty@{k} (bits) | " + " | ".join(
        "–" if report["novelty"][r] is None else f"{report['novelty'][r]:.3f}" for r in report["rankers"]) + " |")
    return "\n".join(lines) + "\n"


def write_text_atomic(text: str, path: str) -> str:
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(obj: Any, path: str) -> str:
    return write_text_atomic(json.dumps(obj, indent=2, allow_nan=False) + "\n", path)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    report = evaluate(args)
    report["eval_seconds"] = time.monotonic() - t0
    report["table_path"] = write_text_atomic(markdown_table(report), args.table_out)
    path = write_json_atomic(report, args.out)
    small = [name for name, s in report["slices"].items() if s["small"]]
    emit("result", k=args.k, ks=args.ks, metrics=report["metrics"], n_users=report["n_users"],
         n_cold_users=report["n_cold_users"], n_skipped_users=report["n_skipped_users"], report_path=path,
         table_path=report["table_path"], intervals=report["overall"]["intervals"],
         differences=report["overall"]["differences"], coverage=report["coverage"], novelty=report["novelty"],
         n_slices=len(report["slices"]), small_slices=small)


if __name__ == "__main__":
    run(main)
