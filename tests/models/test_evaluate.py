"""models.evaluate: a model that learned the planted clusters beats popularity, the vectorised metrics match a
plain per-user loop, intervals and paired differences are well formed, and a baseline trained on another dataset
version (other item indices) is matched by raw item id."""

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TINY_CONFIG, python_job
from models.data import DataError
from models.evaluate import item_index_map, parse_args
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
    assert set(result) == {"event", "metrics", "n_users", "n_cold_users", "n_skipped_users", "k", "ks", "report_path",
                           "table_path", "intervals", "differences", "coverage", "novelty", "n_slices", "small_slices"}
    assert result["k"] == 10 and result["ks"] == [10, 50] and result["report_path"] == str(tmp_path / "report.json")
    assert result["n_cold_users"] == 5  # the users that appear only in the test split
    assert report["metrics"] == result["metrics"]
    model, popularity = result["metrics"]["model"], result["metrics"]["popularity"]
    assert list(model) == METRICS and report["rankers"] == ["model", "popularity"] and report["baseline"] is None
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
    assert report["rankers"] == ["model", "popularity", "baseline"]
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
                           (["--baseline-data-dir", "d"], "--baseline-model"), (["--k", "0"], "--k")):
        with pytest.raises(UsageError, match=message):
            parse_args(base + extra)
