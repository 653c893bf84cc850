"""models.evaluate: a model that learned the planted clusters beats popularity, the vectorised metrics match a
plain per-user loop, intervals and paired differences are well formed, a baseline trained on another dataset
version (other item indices) is matched by raw item id, `popularity` is recent popularity (its window's counts, ties
by all-time count) beside all-time popularity, and warm and cold users are reported apart."""

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TINY_CONFIG, python_job
from models.data import DataError, Interactions
from models.evaluate import DAY_SECONDS, RecentPopularity, item_index_map, parse_args
from models.jsonl import UsageError

METRICS = ["recall@10", "ndcg@10", "hr@10", "recall@50", "ndcg@50", "hr@50", "mrr"]


def run_evaluate(trained, dataset, tmp_path, *extra, k=10, name="report"):
    out, _ = trained
    report = tmp_path / f"{name}.json"
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                     "--out", str(report), "--k", str(k), *extra)
    assert run.returncode == 0, run.stderr
    return run.last, json.loads(report.read_text())


def test_model_beats_popularity(trained, dataset, tmp_path):
    result, report = run_evaluate(trained, dataset, tmp_path)
    assert set(result) == {"event", "metrics", "n_users", "n_cold_users", "n_warm_users", "n_skipped_users", "k", "ks",
                           "protocol", "popularity_days", "report_path", "table_path", "intervals", "differences",
                           "coverage", "novelty", "n_slices", "small_slices"}
    assert result["protocol"] == "time" and result["popularity_days"] == 14
    assert result["k"] == 10 and result["ks"] == [10, 50] and result["report_path"] == str(tmp_path / "report.json")
    assert result["n_cold_users"] == 5  # the users that appear only in the test split
    assert report["metrics"] == result["metrics"]
    model, popularity = result["metrics"]["model"], result["metrics"]["popularity"]
    assert list(model) == METRICS and report["baseline"] is None
    assert report["rankers"] == ["model", "popularity", "popularity_all_time"]
    assert model["ndcg@10"] > popularity["ndcg@10"] + 0.2
    # The gain is real, not noise: the paired interval of the difference excludes 0.
    gain = result["differences"]["vs_popularity"]["ndcg@10"]
    assert gain["lo"] > 0.1 and gain["point"] == pytest.approx(model["ndcg@10"] - popularity["ndcg@10"])
    assert gain["rel_point"] == pytest.approx(model["ndcg@10"] / popularity["ndcg@10"] - 1)
    assert "vs_baseline" not in result["differences"]
    # The model spreads its recommendations over more of the catalogue than popularity's fixed top 10.
    assert result["coverage"]["model"] > result["coverage"]["popularity"] > 0
    assert result["novelty"]["model"] > result["novelty"]["popularity"] > 0
    slices = report["slices"]
    for dimension in ("activity", "new_items", "recency"):
        assert sum(s["n_users"] for s in slices.values() if s["dimension"] == dimension) == result["n_users"]
    assert slices["activity=cold"]["n_users"] == 5 and slices["activity=cold"]["small"]
    assert (tmp_path / "report.md").read_text().startswith("# Offline evaluation")


def test_intervals_hold_their_points_and_mean_the_same_users(trained, dataset, tmp_path):
    result, report = run_evaluate(trained, dataset, tmp_path, "--bootstrap", "300")
    assert report["bootstrap"]["n_resamples"] == 300
    for name, pop in [("overall", report["overall"]), *report["slices"].items()]:
        if pop["n_users"] == 0:
            assert pop["intervals"] == {} and pop["differences"] == {} and pop["small"], name
            continue
        for ranker in ("model", "popularity"):
            for metric, iv in pop["intervals"][ranker].items():
                assert iv["lo"] - 1e-12 <= iv["point"] <= iv["hi"] + 1e-12, (name, ranker, metric)
        for metric, d in pop["differences"]["vs_popularity"].items():
            point = pop["intervals"]["model"][metric]["point"] - pop["intervals"]["popularity"][metric]["point"]
            assert d["point"] == pytest.approx(point, abs=1e-12) and d["lo"] - 1e-12 <= d["point"] <= d["hi"] + 1e-12
    assert report["overall"]["intervals"] == result["intervals"]
    # Slices are smaller than the whole: their intervals are wider.
    overall = report["overall"]["intervals"]["model"]["ndcg@10"]
    cold = report["slices"]["activity=cold"]["intervals"]["model"]["ndcg@10"]
    assert cold["hi"] - cold["lo"] > overall["hi"] - overall["lo"] > 0


def test_a_model_against_itself_differs_by_exactly_zero(trained, dataset, tmp_path):
    out, _ = trained
    result, report = run_evaluate(trained, dataset, tmp_path, "--baseline-model", str(out / "model.pt"),
                                  "--bootstrap", "200")
    assert report["rankers"] == ["model", "popularity", "popularity_all_time", "baseline"]
    assert report["baseline"]["n_items_mapped"] == 50 and report["baseline"]["n_items_unknown"] == 0
    assert result["metrics"]["baseline"] == result["metrics"]["model"]
    assert result["coverage"]["baseline"] == result["coverage"]["model"]
    for pop in [report["overall"], *report["slices"].values()]:
        for d in pop["differences"].get("vs_baseline", {}).values():
            assert (d["point"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0)
            assert d["rel_point"] in (0.0, None) and d["rel_lo"] in (0.0, None)
    assert "Δ vs baseline" in (tmp_path / "report.md").read_text()


def write_items(path, ids):
    pq.write_table(pa.table({"item_idx": pa.array(range(1, len(ids) + 1), pa.int32()),
                             "item_id": pa.array(ids, pa.string())}), path / "items.parquet")


def permuted_copy(dataset, path, perm):
    """The same interactions with item index i renamed perm[i] (a dataset version that indexes items differently);
    both versions get items.parquet with the raw ids "item-<original index>"."""
    shutil.copytree(dataset, path)
    n_items = len(perm) - 1
    for split in ("train", "valid", "test"):
        t = pq.read_table(dataset / f"{split}.parquet").to_pydict()
        rows = sorted(zip(t["ts"], t["user_idx"], (perm[i] for i in t["item_idx"]), t["rating"]))
        ts, user, item, rating = (list(c) for c in zip(*rows))
        pq.write_table(pa.table({"user_idx": pa.array(user, pa.int32()), "item_idx": pa.array(item, pa.int32()),
                                 "ts": pa.array(ts, pa.int64()), "rating": pa.array(rating, pa.float32())}),
                       path / f"{split}.parquet")
    ids = [""] * n_items
    for original in range(1, n_items + 1):
        ids[perm[original] - 1] = f"item-{original}"
    write_items(path, ids)
    return path


def test_baseline_from_another_dataset_version_is_matched_by_raw_item_id(trained, dataset, tmp_path):
    n_items = 50
    perm = np.concatenate([[0], 1 + np.random.default_rng(3).permutation(n_items)])
    original = tmp_path / "v1"
    shutil.copytree(dataset, original)
    write_items(original, [f"item-{i}" for i in range(1, n_items + 1)])
    other = permuted_copy(dataset, tmp_path / "v2", perm)
    retrained = python_job("models.train", "--data-dir", str(other), "--out-dir", str(tmp_path / "train-v2"),
                           "--config-json", json.dumps(TINY_CONFIG))
    assert retrained.returncode == 0, retrained.stderr
    champion = retrained.last["model_path"]

    # The v2 model evaluated on its own version, and as the baseline of an evaluation on v1: the same users, the same
    # histories and test items by raw id, so the same per-user metrics.
    own = python_job("models.evaluate", "--data-dir", str(other), "--model", champion, "--out",
                     str(tmp_path / "own.json"), "--bootstrap", "100")
    assert own.returncode == 0, own.stderr
    result, report = run_evaluate(trained, original, tmp_path, "--baseline-model", champion, "--baseline-data-dir",
                                  str(other), "--bootstrap", "100")
    assert report["baseline"]["n_items_mapped"] == n_items and report["baseline"]["data_dir"] == str(other)
    for metric, value in own.last["metrics"]["model"].items():
        assert result["metrics"]["baseline"][metric] == pytest.approx(value, abs=1e-12), metric
    assert result["metrics"]["baseline"] != result["metrics"]["model"]  # a different model, really compared

    # Without the raw ids the versions cannot be matched: the error names the missing file.
    (other / "items.parquet").unlink()
    failed = python_job("models.evaluate", "--data-dir", str(original), "--model", str(trained[0] / "model.pt"),
                        "--out", str(tmp_path / "x.json"), "--baseline-model", champion, "--baseline-data-dir",
                        str(other))
    assert failed.returncode == 1 and failed.last["type"] == "DataError"
    assert str(other / "items.parquet") in failed.last["message"]


def test_item_index_map_by_raw_id_with_unknown_items(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    write_items(tmp_path / "new", ["a", "b", "c", "d"])
    write_items(tmp_path / "old", ["c", "x", "a"])
    assert item_index_map(str(tmp_path / "new"), 4, str(tmp_path / "old"), 3).tolist() == [0, 3, 0, 1, 0]
    assert item_index_map(str(tmp_path / "new"), 4, str(tmp_path / "new"), 4).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="expected item_idx 1..5"):
        item_index_map(str(tmp_path / "new"), 5, str(tmp_path / "old"), 3)


def test_bad_arguments_are_named():
    base = ["--data-dir", "d", "--model", "m.pt", "--out", "r.json"]
    assert parse_args(base).table_out == "r.md" and parse_args(base + ["--k", "50"]).ks == [50]
    for extra, message in ((["--extra-k", "50,x"], "--extra-k"), (["--bootstrap", "0"], "--bootstrap"),
                           (["--baseline-data-dir", "d"], "--baseline-model"), (["--k", "0"], "--k"),
                           (["--popularity-days", "0"], "--popularity-days"),
                           (["--popularity-days", "nan"], "--popularity-days")):
        with pytest.raises(UsageError, match=message):
            parse_args(base + extra)


def test_recent_popularity_counts_the_half_open_window_per_cut_off():
    day = DAY_SECONDS
    # item 1: 5 rows long ago; item 2: 2 rows in the last 7 days before day 100; item 3: one row exactly at the
    # window's start (in) and one exactly at the cut-off (out); item 4: one row inside the window of a later cut-off.
    rows = [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 95), (2, 99), (3, 93), (3, 100), (4, 104)]
    item, ts = (np.array(c, dtype=np.int64) for c in zip(*rows))
    pop = RecentPopularity(Interactions(np.zeros(len(item), np.int64), item, ts * day), n_items=5, days=7)
    counts = pop.counts(np.array([100.0 * day, 105.0 * day]))
    assert counts.tolist() == [[0, 2, 1, 0, 0], [0, 1, 1, 1, 0]]
    assert pop.all_time.tolist() == [5, 2, 2, 1, 0]
    scores = pop.scores(counts)
    assert np.argsort(-scores[0], kind="stable").tolist() == [1, 2, 0, 3, 4]  # recent first, then all-time
    # Ties in the window are broken by all-time count: items 2, 3, 4 have one row each before day 105.
    assert np.argsort(-scores[1], kind="stable").tolist() == [1, 2, 3, 0, 4]
    assert pop.counts(np.array([0.0])).sum() == 0  # a window before every row


def recent_vs_all_time_dataset(path):
    """Items 1-6. Item 1 was popular long ago (days 0-40), item 2 in the last week before the test window (day 100,
    7 valid rows), so recent popularity ranks 2 before 1 and all-time popularity 1 before 2. Users 0-2 test on item
    2, user 3 on item 1; users 0 and 3 have a history (item 5), users 1 and 2 none (cold)."""
    t = lambda day: 1_700_000_000 + int(day * DAY_SECONDS)  # noqa: E731
    train = [(10 + i, 1, t(i * 4)) for i in range(10)] + [(0, 5, t(50)), (3, 5, t(51)), (20, 3, t(60))]
    valid = [(21 + i, 2, t(94 + i * 0.5)) for i in range(7)]
    test = [(0, 2, t(100)), (1, 2, t(100.5)), (2, 2, t(101)), (3, 1, t(101.5))]
    path.mkdir(parents=True)
    counts = {"users": 28, "items": 6}
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        rows = sorted(rows, key=lambda r: (r[2], r[0], r[1]))
        user, item, ts = zip(*rows)
        pq.write_table(pa.table({"user_idx": pa.array(user, pa.int32()), "item_idx": pa.array(item, pa.int32()),
                                 "ts": pa.array(ts, pa.int64()), "rating": pa.array([None] * len(rows), pa.float32())}),
                       path / f"{name}.parquet")
        counts[name] = len(rows)
    (path / "manifest.json").write_text(json.dumps({"counts": counts, "split": {"testStart": t(100)}}))
    return path


def test_popularity_is_recent_and_warm_and_cold_users_are_apart(tmp_path):
    data = recent_vs_all_time_dataset(tmp_path / "data")
    train = python_job("models.train", "--data-dir", str(data), "--out-dir", str(tmp_path / "train"),
                       "--config-json", json.dumps({**TINY_CONFIG, "epochs": 1, "batch_size": 4}))
    assert train.returncode == 0, train.stderr
    report_path = tmp_path / "report.json"
    run = python_job("models.evaluate", "--data-dir", str(data), "--model", train.last["model_path"], "--out",
                     str(report_path), "--popularity-days", "7", "--bootstrap", "100", "--min-slice-users", "2")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert report["popularity_days"] == 7 and report["protocol"] == "time"
    assert report["popularity_window"] == {"end": "test window start", "start_ts": 1_700_000_000 + 93 * DAY_SECONDS,
                                           "end_ts": 1_700_000_000 + 100 * DAY_SECONDS, "mean_interactions": 7.0}
    # Recent popularity: item 2 first (users 0-2 hit at rank 1), item 1 second (user 3: rank 2).
    # All-time popularity (train+valid): item 1 (10 rows) first, item 2 (7) second: the reverse.
    mrr = {r: report["metrics"][r]["mrr"] for r in ("popularity", "popularity_all_time")}
    assert mrr == {"popularity": pytest.approx((1 + 1 + 1 + 1 / 2) / 4),
                   "popularity_all_time": pytest.approx((1 / 2 + 1 / 2 + 1 / 2 + 1) / 4)}
    warm, cold = report["populations"]["warm"], report["populations"]["cold"]
    assert (warm["n_users"], cold["n_users"], report["n_warm_users"], report["n_cold_users"]) == (2, 2, 2, 2)
    assert warm["intervals"]["popularity"]["mrr"]["point"] == pytest.approx((1 + 1 / 2) / 2)  # users 0 and 3
    assert cold["intervals"]["popularity"]["mrr"]["point"] == 1.0  # users 1 and 2
    assert cold["intervals"]["popularity_all_time"]["mrr"]["point"] == 0.5
    # Populations are the history slices, resampled the same way; the all-time ranker has intervals, no difference.
    assert warm == {k: v for k, v in report["slices"]["history=some"].items() if k not in ("dimension", "value")}
    assert set(warm["differences"]) == {"vs_popularity"}
    table = (tmp_path / "report.md").read_text()
    assert "(2 warm, 2 cold)" in table and "| warm | 2 |" in table and "## All metrics, cold users (2)" in table
