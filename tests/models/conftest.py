"""Shared fixtures of the model tests: a tiny dataset with planted structure, and a runner for the
`python -m models.<step>` jobs that checks the JSON-lines protocol on every call.

Run from the repository root:  OMP_NUM_THREADS=1 ~/.cache/recsys/venv/bin/python -m pytest tests/models -q
(no __init__.py here on purpose: a `tests/models` package would shadow the top-level `models` package).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `import models` however pytest was started


def write_dataset(
    path: Path,
    n_users: int = 200,
    n_clusters: int = 5,
    items_per_cluster: int = 10,
    own_per_user: int = 9,
    other_per_user: int = 3,
    n_cold_users: int = 5,
    seed: int = 0,
) -> Path:
    """A dataset directory in the ETL's layout. Planted structure: user u belongs to cluster u % n_clusters and
    interacts with `own_per_user` distinct items of its cluster (Zipf-like preference inside the cluster) plus
    `other_per_user` random items. Timestamps are random per user, split globally by time 80/10/10, so test items are
    mostly unseen items of the user's own cluster: a model that learns clusters beats popularity. `n_cold_users`
    extra users appear only in the test split (empty history)."""
    rng = np.random.default_rng(seed)
    n_items = n_clusters * items_per_cluster
    zipf = 1.0 / np.arange(1, items_per_cluster + 1)
    users, items = [], []
    for u in range(n_users + n_cold_users):
        cluster = u % n_clusters
        own = 1 + cluster * items_per_cluster + rng.choice(items_per_cluster, own_per_user, replace=False,
                                                           p=zipf / zipf.sum())
        others = np.setdiff1d(np.arange(1, n_items + 1), own)
        picked = np.concatenate([own, rng.choice(others, other_per_user, replace=False)])
        users.append(np.full(len(picked), u))
        items.append(picked)
    user, item = np.concatenate(users), np.concatenate(items)
    ts = 1_700_000_000 + rng.permutation(len(user)).astype(np.int64) * 60  # distinct times, random order per user
    cold = user >= n_users
    ts[cold] = ts.max() + 60 * (1 + np.arange(cold.sum()))  # cold users' rows land in the test split
    cut_valid, cut_test = np.quantile(ts[~cold], [0.8, 0.9])
    split = np.where(ts < cut_valid, "train", np.where(ts < cut_test, "valid", "test"))

    path.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {"users": n_users + n_cold_users, "items": n_items}
    for name in ("train", "valid", "test"):
        rows = np.flatnonzero(split == name)
        rows = rows[np.lexsort((item[rows], user[rows], ts[rows]))]  # sorted by (ts, user_idx, item_idx)
        table = pa.table({
            "user_idx": pa.array(user[rows], pa.int32()),
            "item_idx": pa.array(item[rows], pa.int32()),
            "ts": pa.array(ts[rows], pa.int64()),
            "rating": pa.array(np.full(len(rows), np.nan), pa.float32()),
        })
        pq.write_table(table, path / f"{name}.parquet")
        counts[name] = len(rows)
    (path / "manifest.json").write_text(json.dumps({"counts": counts}))
    return path


@dataclass
class JobResult:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    args: list[str] = field(default_factory=list)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1]


def job_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(REPO)}


def parse_events(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object with an "event" field: the protocol the TypeScript side parses."""
    events = []
    for line in stdout.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict) and "event" in event, line
        events.append(event)
    return events


def run_job(args: list[str], timeout: float = 120) -> JobResult:
    proc = subprocess.run(args, cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=timeout)
    result = JobResult(proc.returncode, parse_events(proc.stdout), proc.stderr, args)
    assert result.events, f"no events on stdout; stderr:\n{proc.stderr}"
    if proc.returncode == 0:
        assert result.last["event"] == "result", proc.stderr
    else:
        assert result.last["event"] == "error", proc.stderr
    return result


def python_job(module: str, *args: str, timeout: float = 120) -> JobResult:
    return run_job([sys.executable, "-m", module, *args], timeout)


def torchrun_job(module: str, *args: str, nproc: int = 2, timeout: float = 180) -> JobResult:
    # `python -m torch.distributed.run` is the `torchrun` script, without depending on PATH.
    return run_job([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", module, *args], timeout)


def train_job(dataset: Path, out: Path, config: dict[str, Any]) -> tuple[Path, JobResult]:
    """A standalone `models.train` run of `config` on `dataset` into `out`, which must succeed."""
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(out),
                     "--config-json", json.dumps(config))
    assert run.returncode == 0, run.stderr
    return out, run


def assert_beats_popularity(dataset: Path, model: Path, tmp_path: Path, margin: float = 0.2) -> JobResult:
    """The model learned the planted clusters: NDCG@10 above popularity's by `margin`, the 95% CI above zero."""
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(model),
                     "--out", str(tmp_path / "eval.json"), "--bootstrap", "200")
    assert run.returncode == 0, run.stderr
    metrics = run.last["metrics"]
    assert metrics["model"]["ndcg@10"] > metrics["popularity"]["ndcg@10"] + margin, metrics
    assert run.last["differences"]["vs_popularity"]["ndcg@10"]["lo"] > 0
    return run


def assert_export_parity(model: Path, out: Path) -> JobResult:
    """`models.export` of `model` to `out` (top 10): the graph's top-K and scores match PyTorch's."""
    run = python_job("models.export", "--model", str(model), "--out", str(out), "--top-k", "10")
    assert run.returncode == 0, run.stderr
    assert run.last["topk_match"] and run.last["max_abs_diff"] <= run.last["tolerance"]
    return run


# Small and fast, with a learning rate high enough to learn the planted clusters in two epochs.
TINY_CONFIG = {"epochs": 2, "batch_size": 64, "lr": 0.02, "embedding_dim": 16, "hidden_dim": 32, "history_len": 8,
               "log_every_seconds": 0.0}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JobResult]:
    """One standalone training run shared by the train, resume, evaluate and export tests."""
    out = tmp_path_factory.mktemp("train")
    result = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(out),
                        "--config-json", json.dumps(TINY_CONFIG))
    assert result.returncode == 0, result.stderr
    return out, result
