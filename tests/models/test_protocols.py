"""models.protocols: every interaction lands in exactly one split, leave-last-out holds out each user's last
interactions by time, the random protocol cuts each user 8:1:1 with RecBole's rounding and repeats itself under a
seed, a failure leaves no directory behind, and a protocol directory trains and evaluates unchanged (every user
counts; histories come back in time order)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import models.protocols as protocols
from conftest import TINY_CONFIG, python_job, write_dataset
from models.data import Interactions, UserSequences, read_manifest, read_split
from models.jsonl import UsageError
from models.protocols import recbole_split_counts, write_protocol

SPLITS = ("train", "valid", "test")


def rows_of(path):
    """(split, user, item, ts, rating) of every row of a dataset directory, in file order (NaN ratings as None,
    so rows compare equal)."""
    out = []
    for split in SPLITS:
        t = pq.read_table(path / f"{split}.parquet").to_pydict()
        ratings = [None if r is None or r != r else r for r in t["rating"]]
        out += [(split, *r) for r in zip(t["user_idx"], t["item_idx"], t["ts"], ratings)]
    return out


def write_rows(path, n_users, n_items, splits):
    """A dataset directory from {split: [(user, item, ts)]}, each file sorted like the ETL's."""
    path.mkdir(parents=True)
    counts = {"users": n_users, "items": n_items}
    for split in SPLITS:
        rows = sorted(splits.get(split, []), key=lambda r: (r[2], r[0], r[1]))
        cols = list(zip(*rows)) if rows else [[], [], []]
        pq.write_table(pa.table({"user_idx": pa.array(cols[0], pa.int32()), "item_idx": pa.array(cols[1], pa.int32()),
                                 "ts": pa.array(cols[2], pa.int64()),
                                 "rating": pa.array([float(i % 5 + 1) for i in cols[1]], pa.float32())}),
                       path / f"{split}.parquet")
        counts[split] = len(rows)
    (path / "manifest.json").write_text(json.dumps({"name": "hand", "version": "v1", "uri": "s3://x/hand/v1/",
                                                    "counts": counts, "split": {"testStart": 0}}))
    return path


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("proto") / "src")


@pytest.mark.parametrize("protocol", ["time", "loo", "random"])
def test_every_interaction_lands_in_exactly_one_split(source, tmp_path, protocol):
    out = tmp_path / protocol
    manifest = write_protocol(str(source), protocol, str(out), seed=1)
    before = sorted(r[1:] for r in rows_of(source))
    after = rows_of(out)
    assert sorted(r[1:] for r in after) == before  # a partition of the same rows, ratings included
    for split in SPLITS:
        table = pq.read_table(out / f"{split}.parquet")
        assert table.schema.equals(pq.read_table(source / f"{split}.parquet").schema)  # the ETL's columns and types
        ts, user, item = (table.column(c).to_numpy() for c in ("ts", "user_idx", "item_idx"))
        assert (np.lexsort((item, user, ts)) == np.arange(len(ts))).all()  # sorted like the ETL's files
        assert manifest["counts"][split] == table.num_rows == manifest["files"][f"{split}.parquet"]["rows"]
    assert manifest["protocol"]["name"] == protocol and "uri" not in manifest
    assert manifest["protocol"]["source"] == {"dataDir": str(source), "name": None, "version": None}
    assert read_manifest(str(out)).n_users == read_manifest(str(source)).n_users
    assert json.loads((out / "manifest.json").read_text()) == manifest
    if protocol == "time":
        for split in SPLITS:  # the ETL's split, byte for byte
            assert (out / f"{split}.parquet").read_bytes() == (source / f"{split}.parquet").read_bytes()
    else:
        test_ts = pq.read_table(out / "test.parquet").column("ts").to_numpy()
        assert manifest["split"]["testStart"] == int(test_ts.min())


def test_leave_last_out_holds_out_each_users_last_two_by_time(tmp_path):
    # u0: five rows, the last two at the same second (ties by file order: item 5 after item 4); its rows are spread
    # over the input's splits out of per-user order. u1: two rows, u2: one row (fewer than 3: all train).
    # u3: three rows.
    src = write_rows(tmp_path / "src", 4, 9, {
        "train": [(0, 1, 100), (0, 2, 300), (1, 6, 150), (3, 7, 10)],
        "valid": [(0, 3, 400), (1, 7, 500), (2, 8, 600), (3, 8, 20)],
        "test": [(0, 5, 900), (0, 4, 900), (3, 9, 30)],
    })
    out = tmp_path / "loo"
    manifest = write_protocol(str(src), "loo", str(out))
    got = {(s, u, i) for s, u, i, _, _ in rows_of(out)}
    assert got == {("train", 0, 1), ("train", 0, 2), ("train", 0, 3), ("valid", 0, 4), ("test", 0, 5),
                   ("train", 1, 6), ("train", 1, 7), ("train", 2, 8),
                   ("train", 3, 7), ("valid", 3, 8), ("test", 3, 9)}
    assert manifest["protocol"]["nTestUsers"] == 2
    assert manifest["split"]["testStart"] == 30 and manifest["split"]["validStart"] == 20


def test_recbole_rounding_of_8_1_1():
    # RecBole's _calcu_split_ids: valid/test rounded down, a share in (0, 1) still gets one row while train keeps
    # more than one.
    assert recbole_split_counts(20) == (16, 2, 2)
    assert recbole_split_counts(15) == (13, 1, 1)
    assert recbole_split_counts(10) == (8, 1, 1)
    assert recbole_split_counts(9) == (7, 1, 1)
    assert recbole_split_counts(3) == (1, 1, 1)
    assert recbole_split_counts(2) == (1, 0, 1)
    assert recbole_split_counts(1) == (1, 0, 0)
    for total in range(0, 300):
        assert sum(recbole_split_counts(total)) == total


def test_random_cuts_each_user_8_1_1_and_repeats_under_a_seed(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [1, 2, 3, 9, 10, 15, 20, 37]
    rows = [(u, int(i), int(t)) for u, n in enumerate(sizes)
            for i, t in zip(rng.choice(np.arange(1, 51), n, replace=False), rng.integers(0, 10_000, n))]
    src = write_rows(tmp_path / "src", len(sizes), 50, {"train": rows})
    a = write_protocol(str(src), "random", str(tmp_path / "a"), seed=7)
    write_protocol(str(src), "random", str(tmp_path / "b"), seed=7)
    write_protocol(str(src), "random", str(tmp_path / "c"), seed=8)
    split_of = {name: {(u, i): s for s, u, i, _, _ in rows_of(tmp_path / name)} for name in ("a", "b", "c")}
    for u, n in enumerate(sizes):
        got = tuple(sum(1 for (uu, _), s in split_of["a"].items() if uu == u and s == split) for split in SPLITS)
        assert got == recbole_split_counts(n), (u, n)
    assert split_of["a"] == split_of["b"]  # the same seed, the same split
    assert split_of["a"] != split_of["c"]
    assert a["protocol"]["seed"] == 7 and a["counts"]["test"] == sum(recbole_split_counts(n)[2] for n in sizes)
    # Random held-out rows are not the last ones: the split is not a time split.
    test_ts = [t for s, _, _, t, _ in rows_of(tmp_path / "a") if s == "test"]
    train_ts = [t for s, _, _, t, _ in rows_of(tmp_path / "a") if s == "train"]
    assert min(test_ts) < max(train_ts)


def test_histories_of_a_random_split_come_back_in_time_order(source, tmp_path):
    out = tmp_path / "random"
    write_protocol(str(source), "random", str(out))
    manifest = read_manifest(str(out))
    train, valid = (read_split(str(out), s, manifest) for s in ("train", "valid"))
    seq = UserSequences(Interactions.concat(train, valid), manifest.n_users)
    for u in range(manifest.n_users):
        ts = seq.ts[seq.start[u]:seq.end[u]]
        assert (np.diff(ts) >= 0).all(), u
    # The concatenation itself is out of order for some user: the sort is what fixes it.
    both = Interactions.concat(train, valid)
    order = np.argsort(both.user, kind="stable")
    assert any((np.diff(both.ts[order][both.user[order] == u]) < 0).any() for u in range(manifest.n_users))


def test_failure_leaves_no_directory_and_existing_output_is_refused(source, tmp_path, monkeypatch):
    out = tmp_path / "loo"
    calls = []

    def failing_write(table, where, **kwargs):
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full")
        return pq.write_table(table, where, **kwargs)

    monkeypatch.setattr(protocols.pq, "write_table", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_protocol(str(source), "loo", str(out))
    assert len(calls) == 2 and str(tmp_path) in calls[0]
    assert list(tmp_path.iterdir()) == []  # neither the directory nor its temporary sibling
    monkeypatch.undo()

    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(UsageError, match="exists"):
        write_protocol(str(source), "loo", str(out))
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_time_split_cannot_be_recovered_from_a_per_user_protocol(source, tmp_path):
    write_protocol(str(source), "loo", str(tmp_path / "loo"))
    job = python_job("models.protocols", "--data-dir", str(tmp_path / "loo"), "--protocol", "time", "--out-dir",
                     str(tmp_path / "t"))
    assert job.returncode == 1 and job.last["type"] == "DataError" and "loo" in job.last["message"]
    assert not (tmp_path / "t").exists()
    bad = python_job("models.protocols", "--data-dir", str(source), "--protocol", "kfold", "--out-dir",
                     str(tmp_path / "k"))
    assert bad.returncode == 2 and bad.last["type"] == "UsageError"


def test_a_loo_directory_trains_and_evaluates_every_user(source, tmp_path):
    job = python_job("models.protocols", "--data-dir", str(source), "--protocol", "loo", "--out-dir",
                     str(tmp_path / "loo"))
    assert job.returncode == 0, job.stderr
    n_users = read_manifest(str(source)).n_users
    assert job.last["out_dir"] == str(tmp_path / "loo") and job.last["n_test_users"] == n_users
    assert job.last["counts"] == {"train": 10 * n_users, "valid": n_users, "test": n_users}  # 12 rows per user
    train = python_job("models.train", "--data-dir", str(tmp_path / "loo"), "--out-dir", str(tmp_path / "train"),
                       "--config-json", json.dumps({**TINY_CONFIG, "epochs": 1}))
    assert train.returncode == 0, train.stderr
    run = python_job("models.evaluate", "--data-dir", str(tmp_path / "loo"), "--model", train.last["model_path"],
                     "--out", str(tmp_path / "eval.json"), "--bootstrap", "50")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    # Every user counts (the time split evaluates only the users active in its last 10%), and all have a history.
    assert report["n_users"] == n_users and report["protocol"] == "loo"
    assert report["populations"]["warm"]["n_users"] == n_users and report["populations"]["cold"]["n_users"] == 0
    assert report["popularity_window"]["end"] == "each user's first test interaction"
    assert sum(s["n_users"] for s in report["slices"].values() if s["dimension"] == "recency") == n_users
