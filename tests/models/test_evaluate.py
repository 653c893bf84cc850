"""models.evaluate: a model that learned the planted clusters beats popularity, and the vectorised metrics match a
plain per-user loop."""

import json
import math

import numpy as np
import pyarrow.parquet as pq

from conftest import python_job


def run_evaluate(trained, dataset, tmp_path, k=10):
    out, _ = trained
    report = tmp_path / "report.json"
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                     "--out", str(report), "--k", str(k))
    assert run.returncode == 0, run.stderr
    return run.last, json.loads(report.read_text())


def test_model_beats_popularity(trained, dataset, tmp_path):
    result, report = run_evaluate(trained, dataset, tmp_path)
    assert set(result) == {"event", "metrics", "n_users", "n_cold_users", "n_skipped_users", "k", "report_path"}
    assert result["k"] == 10 and result["report_path"] == str(tmp_path / "report.json")
    assert result["n_cold_users"] == 5  # the users that appear only in the test split
    assert report["metrics"] == result["metrics"]
    model, popularity = result["metrics"]["model"], result["metrics"]["popularity"]
    assert set(model) == {"recall@10", "ndcg@10", "hr@10", "mrr"}
    assert model["ndcg@10"] > popularity["ndcg@10"] + 0.2
    assert report["slices"]["cold"]["n_users"] + report["slices"]["warm"]["n_users"] == result["n_users"]


def naive_popularity_metrics(dataset, k):
    """The evaluation protocol written as a plain loop over users, for the popularity baseline."""
    split = {s: pq.read_table(dataset / f"{s}.parquet").to_pydict() for s in ("train", "valid", "test")}
    n_items = json.loads((dataset / "manifest.json").read_text())["counts"]["items"]
    count = np.bincount(split["train"]["item_idx"], minlength=n_items + 1)
    history, test = {}, {}
    for s in ("train", "valid"):
        for u, i in zip(split[s]["user_idx"], split[s]["item_idx"]):
            history.setdefault(u, set()).add(i)
    for u, i in zip(split["test"]["user_idx"], split["test"]["item_idx"]):
        test.setdefault(u, set()).add(i)
    rows = []
    for u, items in test.items():
        seen = history.get(u, set())
        relevant = items - seen
        if not relevant:
            continue
        ranking = sorted((i for i in range(1, n_items + 1) if i not in seen), key=lambda i: (-count[i], i))
        hits = [i in relevant for i in ranking]
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits[:k]) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        rows.append([sum(hits[:k]) / len(relevant), dcg / idcg, float(any(hits[:k])), 1 / (hits.index(True) + 1)])
    return dict(zip(["recall@5", "ndcg@5", "hr@5", "mrr"], np.mean(rows, axis=0))), len(rows)


def test_metrics_match_a_naive_loop(trained, dataset, tmp_path):
    result, _ = run_evaluate(trained, dataset, tmp_path, k=5)
    expected, n_users = naive_popularity_metrics(dataset, k=5)
    assert result["n_users"] == n_users
    for name, value in expected.items():
        assert math.isclose(result["metrics"]["popularity"][name], value, rel_tol=1e-9), name
