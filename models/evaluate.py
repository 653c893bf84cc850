"""Full-ranking evaluation of a model on the test split against a popularity baseline and, optionally, the current
champion; per-slice metrics with bootstrap confidence intervals, so promotion gates decide on intervals, not on
point estimates. No sampled negatives.

    OMP_NUM_THREADS=1 python -m models.evaluate --data-dir D --model O/model.pt --out O/eval.json [--k 10] \
        [--extra-k 50] [--baseline-model C/model.pt --baseline-data-dir D_OLD] [--bootstrap 1000] [--seed 0] \
        [--min-slice-users 20] [--popularity-days 14] [--table-out O/eval.md]

Protocol. For each user with test interactions: the history is their train+valid interactions in time order (the
last `history_len` are the model input); every item is scored, the user's history items are excluded, and the rest
are ranked. Relevant = the user's test items not in their history (users left with none are skipped and counted).
Families with `uses_time` (models/continuous_time.py) also get the history's timestamps, and as query_time the user's
first test interaction's time (the moment a request would have been served).
The split is the dataset directory's: the ETL's global time split, or a per-user protocol of models/protocols.py
(manifest `protocol.name` loo|random; `time` when absent). Cut-off: under the time split, the test window's start
(the manifest's split.testStart, else the first test ts), the same for every user; under loo/random there is no
common test window, and each user's cut-off is their own first test ts.
Rankers:
  model       the model under evaluation.
  popularity  RECENT popularity, the floor a model must beat and the one the gates compare with: per item, the
              train+valid interactions (the users' histories) in the last --popularity-days D days before the
              user's cut-off, ties broken by all-time count (then by item index); the same exclusions. Train+valid,
              not train alone: under the time split the valid window (25 days on ML-100K) lies between train and
              test, so a train-only window would be empty for any D below that. (A window ending at the earliest
              test ts for loo/random would hold ML-100K's first days only, a worse ranking than all-time counts:
              hence the per-user cut-off.)
              Default D = 14, chosen without the test split: on ML-100K's time split, with the valid split as the
              target and train as the history, Recall@10 is flat for D from 5 to 45 days (0.110-0.126, best at 14;
              all-time 0.079); on the test window D = 14 gives Recall@10 0.138 / NDCG@10 0.363 against all-time's
              0.068 / 0.288 (the lift the issue reports: 0.068 -> 0.143 at about D = 30), and D from 14 to 45 days
              all give 0.138-0.146. A plateau, not a peak: the choice does not depend on the exact D.
  popularity_all_time
              all-time counts of the same interactions (train+valid); intervals only, no differences, no gate.
  baseline    (with --baseline-model) a second model, typically the `champion`, possibly trained on another dataset
              version: items are matched by raw item id (items.parquet of both versions; identity when both are
              the same directory). Its input history is the user's history in *this* dataset, mapped to its
              indices (items it does not know are dropped), cut to its own history_len; items of this catalogue it
              does not know score -inf. Same users, same test items, same exclusions: differences are paired.
Metrics per user: recall@k, ndcg@k, hr@k for k in {--k} + --extra-k, and mrr over the full ranking
(models/metrics.py); the reported value is the mean over users. Catalogue coverage@k (share of catalogue items in
some user's top k) and novelty@k (mean of -log2 p(item) over recommended items, p = (train count + 1) / (train
interactions + n_items)) at the primary k. Slices: models/slices.py (recency measured to the user's cut-off, clipped
at 0: a random split's history may postdate its test items). Populations: warm = users with a history before the
test window (train+valid non-empty; under loo/random that is every evaluated user), cold = the rest; cold users get
the same ranking from every history-blind ranker, which is why they are reported apart. Intervals:
models/bootstrap.py (percentile, users resampled with replacement, the same resamples for every ranker of a
population so differences are paired; each slice and population is resampled on its own).

stdout (JSON lines), the final line:
  {"event":"result","k":10,"ks":[10,50],"metrics":{"model":{"recall@10":..,..,"mrr":..},"popularity":{..},
   "popularity_all_time":{..},"baseline":{..}?},"n_users":N,"n_cold_users":C,"n_warm_users":W,"n_skipped_users":S,
   "protocol":"time","popularity_days":D,"report_path":"/abs/eval.json","table_path":"/abs/eval.md",
   "intervals":<overall intervals>,"differences":<overall differences>,"coverage":{ranker: share},
   "novelty":{ranker: bits},"n_slices":M,"small_slices":[name, ...]}

Report file (JSON):
  k, ks, metric_names, rankers ["model","popularity","popularity_all_time"(,"baseline")], n_users, n_cold_users,
  n_warm_users, n_skipped_users,
  protocol     "time" | "loo" | "random" (the dataset manifest's protocol.name)
  popularity_days   D
  popularity_window {"end": "test window start" | "each user's first test interaction", "start_ts", "end_ts"
                     (epoch s, the half-open window; null when per user), "mean_interactions": interactions in the
                     window, mean over the evaluated users}
  metrics      {ranker: {metric: mean}}                                     (point estimates, all users)
  overall      Population (below) over all evaluated users
  populations  {"warm": Population, "cold": Population} (see Populations above)
  slices       {"activity=cold"|...: Population + "dimension", "value"}
  slice_definitions  thresholds and rules of each slice dimension (models/slices.py)
  coverage     {ranker: share of catalogue items in some top-k}      novelty  {ranker: mean -log2 p, bits}
  bootstrap    {"n_resamples", "confidence", "seed", "method", "min_slice_users"}
  model        {path, family, n_items, history_len, config}
  baseline     null | {path, data_dir, family, n_items, history_len, config, n_items_mapped, n_items_unknown}
  stages       null | per-stage metrics of a multi-stage model (the cascade): models/stage_metrics.py
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
from models.continuous_time import user_scores
from models.data import DataError, Interactions, UserSequences, read_manifest, read_split
from models.model_file import load_model
from models.jsonl import ArgumentParser, UsageError, emit, run
from models.metrics import metric_names, metric_names_multi, metrics_from_ranked, per_user_metrics, rank_order
from models.stage_metrics import StageMetrics
from models.slices import POPULARITY_CLASSES, SliceInputs, item_popularity_classes, slice_masks

SCORE_CELLS_PER_BATCH = 2**22  # users per batch = this / n_items: bounds the working set (~150 MB at 4M cells)
RANKER_OTHERS = {"popularity": "vs_popularity", "baseline": "vs_baseline"}
DEFAULT_POPULARITY_DAYS = 14.0  # why 14: the module docstring (popularity)
DAY_SECONDS = 86_400
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
    p.add_argument("--popularity-days", type=float, default=DEFAULT_POPULARITY_DAYS,
                   help="recent popularity counts the last D days before the test window")
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
    if not args.popularity_days > 0 or not np.isfinite(args.popularity_days):
        raise UsageError(f"--popularity-days must be a positive number of days, got {args.popularity_days}")
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


def dataset_protocol(data_dir: str) -> str:
    """The manifest's protocol.name (models/protocols.py); `time` for the ETL's own directories."""
    with open(os.path.join(data_dir, "manifest.json"), encoding="utf-8") as f:
        block = json.load(f).get("protocol")
    name = block.get("name") if isinstance(block, dict) else None
    return str(name) if name else "time"


class RecentPopularity:
    """Recent popularity (see the module docstring): per item, the `history` rows in the half-open window
    [end - days, end), ties by all-time count, as float64 scores `recent * (max all-time + 1) + all-time` (exact).
    `end` may differ per user (the per-user protocols): the counts come from one sorted array of (item, ts) keys,
    two binary searches per (user, item) cell, no per-user Python."""

    def __init__(self, history: Interactions, n_items: int, days: float):
        self.n_items, self.seconds = n_items, days * DAY_SECONDS
        self.all_time = np.bincount(history.item, minlength=n_items + 1)[1:].astype(np.int64)
        self.t0 = int(history.ts.min()) if len(history) else 0
        self.span = (int(history.ts.max()) - self.t0 + 1) if len(history) else 1  # every ts offset is < span
        self.keys = np.sort(history.item * self.span + (history.ts - self.t0))

    def counts(self, ends: np.ndarray) -> np.ndarray:
        """(len(ends), n_items) int64: rows with ts in [end - days, end) per item, one row per end."""
        def offset(t: np.ndarray) -> np.ndarray:  # integer ts < t  <=>  ts - t0 < ceil(t) - t0, clipped to the keys
            return np.clip(np.ceil(t) - self.t0, 0, self.span).astype(np.int64)[:, None]

        base = np.arange(1, self.n_items + 1, dtype=np.int64)[None, :] * self.span
        hi = np.searchsorted(self.keys, base + offset(ends))
        lo = np.searchsorted(self.keys, base + offset(ends - self.seconds))
        return hi - lo

    def scores(self, counts: np.ndarray) -> np.ndarray:
        return counts * float(self.all_time.max(initial=0) + 1) + self.all_time


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

    def scores(self, users: np.ndarray, n_items: int, query_time_ms: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            raw = user_scores(self.model, self.seen, users, query_time_ms).numpy()
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
    # One resample pass per ranker, not one over all rankers side by side: a matrix product's last bits depend on a
    # column's position, and two rankers that score alike (a model against itself) must get identical intervals.
    for r in rankers:
        out["intervals"][r] = dict(zip(names, boot.intervals(per_user[r][mask])))
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
    history = Interactions.concat(train, valid)  # per-user time order: UserSequences sorts by (user, ts)
    seen = UserSequences(history, manifest.n_users)
    targets = UserSequences(test, manifest.n_users)
    test_users = np.flatnonzero(targets.end > targets.start)
    counts = np.bincount(train.item, minlength=n_items + 1)[1:]
    classes = item_popularity_classes(counts)
    class_masks = np.stack([classes == c for c in range(len(POPULARITY_CLASSES))], axis=1)  # (items, 3)
    self_information = -np.log2((counts + 1.0) / (counts.sum() + n_items))
    last_ts = np.full(manifest.n_users, -np.inf)
    np.maximum.at(last_ts, history.user, history.ts.astype(np.float64))
    test_start = test_window_start(args.data_dir, test)
    protocol = dataset_protocol(args.data_dir)
    # Each user's cut-off (recency slices, recent popularity's window): the test window's start under the time split,
    # else the user's first test ts.
    reference = np.full(manifest.n_users, test_start)
    if protocol != "time":
        reference = np.full(manifest.n_users, np.inf)
        np.minimum.at(reference, test.user, test.ts.astype(np.float64))
    # Recent popularity's window ends where the user's test data starts: the same for every user under the time split.
    recent = RecentPopularity(history, n_items, args.popularity_days)
    common = recent.counts(np.array([test_start])) if protocol == "time" else None
    popularity_all_time = recent.all_time.astype(np.float32)

    baseline = None
    if args.baseline_model is not None:
        baseline = Baseline(args.baseline_model, args.baseline_data_dir or args.data_dir, args.data_dir, n_items,
                            history, manifest.n_users)
    rankers = ["model", "popularity", "popularity_all_time"] + (["baseline"] if baseline else [])
    names = metric_names_multi(args.ks)
    per_user: dict[str, list[np.ndarray]] = {r: [] for r in rankers}
    recommended = {r: np.zeros(n_items, dtype=np.int64) for r in rankers}
    info_sum = {r: 0.0 for r in rankers}
    slots = {r: 0 for r in rankers}
    features: dict[str, list[np.ndarray]] = {"hist": [], "since": [], "cls": [], "new": [], "window": []}
    skipped = 0
    stage_metrics = StageMetrics(model, args.k) if hasattr(model, "stage_rankings") else None  # cascade family
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
        since = np.maximum(reference[users] - last_ts[users], 0.0)
        features["since"].append(np.where(np.isfinite(last_ts[users]), since, np.nan))
        features["cls"].append((relevant[:, :, None] & class_masks[None, :, :]).any(axis=1))
        features["new"].append((relevant & (counts == 0)[None, :]).any(axis=1))

        query_time_ms = targets.ts[targets.start[users]] * 1000  # uses_time families: the first test interaction's
        with torch.inference_mode():
            scores = user_scores(model, seen, users, query_time_ms).numpy()
        if stage_metrics is not None:
            stage_metrics.add(seen.user_histories(users, model.history_len), excluded, relevant)
        window_counts = common if common is not None else recent.counts(reference[users])
        features["window"].append(np.broadcast_to(window_counts.sum(axis=1), (len(users),)))
        raw_scores = {"model": scores, "popularity": np.broadcast_to(recent.scores(window_counts), scores.shape),
                      "popularity_all_time": np.broadcast_to(popularity_all_time, scores.shape)}
        if baseline:
            raw_scores["baseline"] = baseline.scores(users, n_items, query_time_ms)
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
    warm = inputs.history_len > 0
    populations = {name: population(boot_args, mask, arrays, names, args.min_slice_users)
                   for name, mask in (("warm", warm), ("cold", ~warm))}
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
        "n_warm_users": int(warm.sum()),
        "n_skipped_users": skipped,
        "protocol": protocol,
        "popularity_days": args.popularity_days,
        "popularity_window": {
            "end": "test window start" if protocol == "time" else "each user's first test interaction",
            "start_ts": test_start - recent.seconds if protocol == "time" else None,
            "end_ts": test_start if protocol == "time" else None,
            "mean_interactions": float(np.concatenate(features["window"]).mean()),
        },
        "metrics": {r: dict(zip(names, (float(x) for x in a.mean(axis=0)))) for r, a in arrays.items()},
        "overall": overall,
        "populations": populations,
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
        "stages": stage_metrics.report(args.bootstrap, args.seed) if stage_metrics else None,
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
    """A readable view of the report: the primary metric overall, for warm and cold users and per slice, with
    intervals and paired differences, then every metric for all, warm and cold users."""
    k = report["k"]
    primary = f"ndcg@{k}"
    has_base = "baseline" in report["rankers"]
    b = report["bootstrap"]
    pops = report["populations"]
    lines = [f"# Offline evaluation: {report['n_users']} test users ({pops['warm']['n_users']} warm, "
             f"{pops['cold']['n_users']} cold), full ranking, protocol `{report['protocol']}`",
             "", f"Intervals: {round(100 * b['confidence'])}% percentile bootstrap, {b['n_resamples']} resamples "
             f"(seed {b['seed']}); differences are paired (model − other); `small` slices have fewer than "
             f"{b['min_slice_users']} users.",
             "", f"`popularity` is recent popularity: interactions before the test window (train+valid) in its last "
             f"{report['popularity_days']:g} days, ties by all-time count; `popularity_all_time` counts all of them. "
             "Warm users have a history before the test window, cold ones none.", "",
             f"## {primary.upper()} by population and slice", ""]
    head = ["population", "users", f"model {primary}", f"popularity {primary}", "Δ vs popularity",
            f"all-time popularity {primary}"]
    if has_base:
        head += [f"baseline {primary}", "Δ vs baseline"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [("overall", report["overall"]), ("warm", pops["warm"]), ("cold", pops["cold"]), *report["slices"].items()]
    for name, pop in rows:
        iv, diff = pop["intervals"], pop["differences"]
        row = [name + (" (small)" if pop["small"] else ""), str(pop["n_users"]),
               _fmt(iv.get("model", {}).get(primary)), _fmt(iv.get("popularity", {}).get(primary)),
               _fmt(diff.get("vs_popularity", {}).get(primary), signed=True, rel=True),
               _fmt(iv.get("popularity_all_time", {}).get(primary))]
        if has_base:
            row += [_fmt(iv.get("baseline", {}).get(primary)),
                    _fmt(diff.get("vs_baseline", {}).get(primary), signed=True, rel=True)]
        lines.append("| " + " | ".join(row) + " |")
    for title, pop in (("all users", report["overall"]), ("warm users", pops["warm"]), ("cold users", pops["cold"])):
        if pop["n_users"] == 0:
            continue
        lines += ["", f"## All metrics, {title} ({pop['n_users']})", "",
                  "| metric | " + " | ".join(report["rankers"]) + " |", "|" + "---|" * (1 + len(report["rankers"]))]
        for m in report["metric_names"]:
            lines.append(f"| {m} | " + " | ".join(_fmt(pop["intervals"][r][m]) for r in report["rankers"]) + " |")
        if pop is report["overall"]:
            lines.append(f"| coverage@{k} | " + " | ".join(f"{report['coverage'][r]:.4f}" for r in report["rankers"])
                         + " |")
            lines.append(f"| novelty@{k} (bits) | " + " | ".join(
                "–" if report["novelty"][r] is None else f"{report['novelty'][r]:.3f}" for r in report["rankers"])
                + " |")
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
         n_cold_users=report["n_cold_users"], n_warm_users=report["n_warm_users"],
         n_skipped_users=report["n_skipped_users"], protocol=report["protocol"],
         popularity_days=report["popularity_days"], report_path=path,
         table_path=report["table_path"], intervals=report["overall"]["intervals"],
         differences=report["overall"]["differences"], coverage=report["coverage"], novelty=report["novelty"],
         n_slices=len(report["slices"]), small_slices=small)


if __name__ == "__main__":
    run(main)
