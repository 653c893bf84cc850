"""Evaluation protocols: turn a dataset directory (the ETL's global time split) into another dataset directory with
the same files, split another way, so that models.train and models.evaluate run on it unchanged.

    OMP_NUM_THREADS=1 python -m models.protocols --data-dir D --protocol time|loo|random --out-dir O [--seed 0]

Why: the global time split is the production-like protocol the gates use, but on it most users have no test items
(ML-100K: 166 of 943 users are evaluated) and published figures use per-user protocols. With these, every user
with enough interactions counts, and our numbers can stand beside RecBole's.

Protocols (the input's rows of train, valid and test together, in time order: by ts, ties by file order, which for
the ETL's files is by user_idx then item_idx):
  time    the dataset as the ETL split it: the files are copied unchanged.
  loo     per-user leave-last-out (RecBole `eval_args: {split: {LS: valid_and_test}, order: TO, group_by: user}`):
          each user's last interaction is test, the second last valid, the rest train. Users with fewer than 3
          interactions keep all of them in train (the contract; RecBole would still hold out the last of a
          2-interaction user as test).
  random  RecBole's random 8:1:1 (`split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user`): the rows are shuffled
          (seeded), then each user's rows, in shuffled order, are cut into train/valid/test with RecBole's rounding
          (`recbole_split_counts`).

Output: O/{train,valid,test}.parquet with the input's columns and types (user_idx int32, item_idx int32, ts int64,
rating float32; see models/data.py), each sorted in time order like the ETL's files; items.parquet and users.parquet
copied (same indices); manifest.json = the input's, with `counts` train/valid/test updated, `files` rows/sha256 of
the new files (storage uris dropped: this directory is local), and
  split     time: unchanged. loo/random: no common test window exists, so testStart/validStart are the earliest test
            and valid ts (models.evaluate's recent-popularity window ends at testStart; a user is warm when their
            train+valid history is non-empty), and `rule` says so.
  protocol  {"name", "seed" (random only, else null), "rule", "source": {"dataDir", "name", "version"},
             "nTestUsers": users with a test interaction}.
Across files the per-user protocols are not in time order (a random-split user's test item may predate their train
items): models/data.py's UserSequences sorts each user's rows by ts, so training samples and evaluation histories
stay per-user time-ordered.

The directory is written atomically: into a temporary sibling, renamed into place when complete; on any failure the
temporary directory is removed and O does not exist. O must not exist beforehand.

stdout (JSON lines), the final line:
  {"event":"result","protocol":"loo","out_dir":"/abs/O","counts":{"train":..,"valid":..,"test":..},
   "n_test_users":N,"seconds":t}
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.data import SPLITS, DataError
from models.jsonl import ArgumentParser, UsageError, emit, run

PROTOCOLS = ("time", "loo", "random")
RANDOM_RATIOS = (0.8, 0.1, 0.1)
LOO_MIN_INTERACTIONS = 3  # fewer: the user's rows all stay in train
TRAIN, VALID, TEST = 0, 1, 2
REQUIRED_COLUMNS = {"user_idx": pa.int32(), "item_idx": pa.int32(), "ts": pa.int64()}
COPIED_FILES = ("items.parquet", "users.parquet")
RULES = {
    "time": "global time split as the ETL made it: train ts < validStart <= valid ts < testStart <= test ts",
    "loo": "per-user leave-last-out: last interaction (by ts, ties by file order) test, second last valid, the rest "
           "train; users with fewer than 3 interactions all train. testStart/validStart: earliest test/valid ts",
    "random": "RecBole random 8:1:1 grouped by user: rows shuffled (seeded), each user's rows cut 8:1:1 with "
              "RecBole's rounding. testStart/validStart: earliest test/valid ts",
}


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.protocols",
                       description="Split a dataset directory by an evaluation protocol (JSON lines on stdout).")
    p.add_argument("--data-dir", required=True, help="dataset directory as the ETL wrote it")
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--out-dir", required=True, help="the new dataset directory (must not exist)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed of the random protocol")
    return p.parse_args(argv)


def recbole_split_counts(total: int, ratios: Sequence[float] = RANDOM_RATIOS) -> tuple[int, ...]:
    """How many of a user's `total` rows go to each split: RecBole's Dataset._calcu_split_ids
    (recbole/data/dataset/dataset.py, called by Dataset.split_by_ratio per user group), verbatim in effect: ratios
    normalised; every part but the first rounded down; then, from the last part backwards and while the first part
    keeps more than one row, a part whose exact share is in (0, 1) gets one row taken from the first."""
    norm = [r / sum(ratios) for r in ratios]
    cnt = [int(r * total) for r in norm]
    cnt[0] = total - sum(cnt[1:])
    for i in range(1, len(norm)):
        if cnt[0] <= 1:
            break
        if 0 < norm[-i] * total < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return tuple(cnt)


def rank_within_user(user: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in `order` grouped by user (stable), each row's 0-based position within its user and its
    user's row count."""
    grouped = order[np.argsort(user[order], kind="stable")]
    counts = np.bincount(user)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(user), dtype=np.int64)
    rank[grouped] = np.arange(len(user)) - starts[user[grouped]]
    return rank, counts[user]


def assign_splits(user: np.ndarray, protocol: str, seed: int = 0) -> np.ndarray:
    """Split code (TRAIN/VALID/TEST) of each row; rows are given in time order (ts, ties by file order)."""
    n = len(user)
    if protocol == "loo":
        rank, count = rank_within_user(user, np.arange(n))
        from_end = count - 1 - rank
        eligible = count >= LOO_MIN_INTERACTIONS
        return np.where(eligible & (from_end == 0), TEST, np.where(eligible & (from_end == 1), VALID, TRAIN))
    if protocol == "random":
        # RecBole's RO order is one shuffle of all rows; grouping by user keeps it, so each user's rows come in a
        # uniformly random order.
        rank, count = rank_within_user(user, np.random.default_rng(seed).permutation(n))
        sizes, inverse = np.unique(count, return_inverse=True)
        parts = np.array([recbole_split_counts(int(c)) for c in sizes], dtype=np.int64).reshape(-1, 3)[inverse]
        n_train, n_valid = parts[:, 0], parts[:, 1]
        return np.where(rank < n_train, TRAIN, np.where(rank < n_train + n_valid, VALID, TEST))
    raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)} for a re-split, got {protocol!r}")


def read_table(data_dir: str, split: str) -> pa.Table:
    path = os.path.join(data_dir, f"{split}.parquet")
    if not os.path.exists(path):
        raise DataError(f"missing {path}")
    table = pq.read_table(path)
    for name, kind in REQUIRED_COLUMNS.items():
        if name not in table.column_names or table.schema.field(name).type != kind:
            found = table.schema.field(name).type if name in table.column_names else "no such column"
            raise DataError(f"{path}: column {name} must be {kind}, found {found}")
    return table


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_protocol(data_dir: str, protocol: str, out_dir: str, seed: int = 0) -> dict[str, Any]:
    """Write the dataset directory of `protocol` to `out_dir` atomically; returns its manifest."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    out_dir = os.path.abspath(out_dir)
    if os.path.lexists(out_dir):
        raise UsageError(f"--out-dir {out_dir} exists; a protocol directory is written once, into a new path")
    manifest_path = os.path.join(data_dir, "manifest.json")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        for key in ("users", "items"):
            int(manifest["counts"][key])
    except FileNotFoundError:
        raise DataError(f"no manifest.json in {data_dir}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{manifest_path}: expected {{'counts': {{'users': U, 'items': I, ...}}}} ({exc!r})") from None
    source_protocol = (manifest.get("protocol") or {}).get("name", "time")
    if protocol == "time" and source_protocol != "time":
        raise DataError(f"{data_dir} was split by protocol {source_protocol!r}: the time split cannot be recovered "
                        "from it; start from the ETL's directory")

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        counts = write_splits(data_dir, protocol, seed, tmp)
        for name in COPIED_FILES:
            if os.path.exists(os.path.join(data_dir, name)):
                shutil.copyfile(os.path.join(data_dir, name), os.path.join(tmp, name))
        out_manifest = derived_manifest(manifest, data_dir, protocol, seed, counts, tmp)
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(out_manifest, indent=2, allow_nan=False) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 is for the temporary name only
        os.rename(tmp, out_dir)  # atomic on one filesystem; fails (keeping tmp to remove) if out_dir appeared
    except BaseException:  # Terminated included: never leave a half-written directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_manifest


def write_splits(data_dir: str, protocol: str, seed: int, out: str) -> dict[str, Any]:
    """Write {train,valid,test}.parquet into `out`; returns counts and the split facts the manifest needs."""
    if protocol == "time":
        for split in SPLITS:
            read_table(data_dir, split)  # the same schema checks as a re-split
            shutil.copyfile(os.path.join(data_dir, f"{split}.parquet"), os.path.join(out, f"{split}.parquet"))
        tables = {s: pq.read_table(os.path.join(out, f"{s}.parquet"), columns=["user_idx", "ts"]) for s in SPLITS}
    else:
        parts = [read_table(data_dir, s) for s in SPLITS]
        try:
            rows = pa.concat_tables(parts)
        except pa.ArrowInvalid as exc:
            raise DataError(f"{data_dir}: the splits' schemas differ ({exc})") from None
        user, ts = (rows.column(c).to_numpy().astype(np.int64) for c in ("user_idx", "ts"))
        if len(user) and user.min() < 0:
            raise DataError(f"{data_dir}: negative user_idx {user.min()}")
        # Time order, ties by file order (train, valid, test; within a file, its (ts, user_idx, item_idx) sort).
        order = np.lexsort((user, ts))
        rows, user = rows.take(pa.array(order)), user[order]
        split_of = assign_splits(user, protocol, seed)
        tables = {}
        for code, split in enumerate(SPLITS):
            tables[split] = rows.filter(pa.array(split_of == code))
            pq.write_table(tables[split], os.path.join(out, f"{split}.parquet"))
    out_counts: dict[str, Any] = {s: tables[s].num_rows for s in SPLITS}
    first = {s: int(pc.min(tables[s].column("ts")).as_py()) if tables[s].num_rows else None for s in SPLITS}
    test_users = np.unique(tables["test"].column("user_idx").to_numpy())
    return {"counts": out_counts, "first_ts": first, "n_test_users": int(len(test_users))}


def derived_manifest(manifest: dict[str, Any], data_dir: str, protocol: str, seed: int, facts: dict[str, Any],
                     out: str) -> dict[str, Any]:
    m = json.loads(json.dumps(manifest))  # a deep copy
    m.pop("uri", None)
    m["counts"].update(facts["counts"])
    files = m.get("files") if isinstance(m.get("files"), dict) else {}
    for name in [f"{s}.parquet" for s in SPLITS] + list(COPIED_FILES):
        path = os.path.join(out, name)
        if not os.path.exists(path):
            continue
        entry = {k: v for k, v in (files.get(name) or {}).items() if k != "uri"}
        entry["sha256"] = sha256(path)
        split = name.removesuffix(".parquet")
        if split in SPLITS:
            entry["rows"] = facts["counts"][split]
        files[name] = entry
    m["files"] = files
    if protocol != "time":
        m["split"] = {"validStart": facts["first_ts"]["valid"], "testStart": facts["first_ts"]["test"],
                      "rule": RULES[protocol]}
    m["protocol"] = {
        "name": protocol,
        "seed": seed if protocol == "random" else None,
        "rule": RULES[protocol],
        "source": {"dataDir": os.path.abspath(data_dir), "name": manifest.get("name"),
                   "version": manifest.get("version")},
        "nTestUsers": facts["n_test_users"],
    }
    return m


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    manifest = write_protocol(args.data_dir, args.protocol, args.out_dir, args.seed)
    emit("result", protocol=args.protocol, out_dir=os.path.abspath(args.out_dir),
         counts={s: manifest["counts"][s] for s in SPLITS}, n_test_users=manifest["protocol"]["nTestUsers"],
         seconds=time.monotonic() - t0)


if __name__ == "__main__":
    run(main)
