"""Dataset reading and history building.

A dataset directory (written by the TypeScript ETL) holds `manifest.json` and `{train,valid,test}.parquet` with
columns user_idx int32 (0-based), item_idx int32 (1..n_items; 0 is padding), ts int64, rating float32, each file
sorted by (ts, user_idx, item_idx), and every train ts < every valid ts < every test ts (the global time split; the
per-user protocols of models/protocols.py keep the files' sort but not this order across files).

Interactions are kept grouped by user in time order (CSR layout: one flat item array plus per-user offsets), so that
a history is a slice and a batch of histories is one vectorised gather: no per-sample Python.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch

SPLITS = ("train", "valid", "test")
PAD = 0  # item index reserved for padding


class DataError(ValueError):
    """The dataset directory is missing files or violates the schema."""


@dataclass(frozen=True)
class Manifest:
    n_users: int
    n_items: int
    counts: dict[str, int]


@dataclass(frozen=True)
class Interactions:
    """One split's rows in file order (chronological)."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64, 1..n_items
    ts: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user)

    @staticmethod
    def concat(*parts: "Interactions") -> "Interactions":
        return Interactions(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("user", "item", "ts")))


def read_manifest(data_dir: str) -> Manifest:
    path = os.path.join(data_dir, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            counts = json.load(f)["counts"]
        return Manifest(n_users=int(counts["users"]), n_items=int(counts["items"]), counts=counts)
    except FileNotFoundError:
        raise DataError(f"no manifest.json in {data_dir} (a dataset without a manifest is incomplete)") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected {{'counts': {{'users': U, 'items': I, ...}}}} ({exc!r})") from None


def read_split(data_dir: str, split: str, manifest: Manifest) -> Interactions:
    path = os.path.join(data_dir, f"{split}.parquet")
    if not os.path.exists(path):
        raise DataError(f"missing {path}")
    table = pq.read_table(path, columns=["user_idx", "item_idx", "ts"])
    user, item, ts = (table.column(c).to_numpy().astype(np.int64) for c in ("user_idx", "item_idx", "ts"))
    if len(item) and (item.min() < 1 or item.max() > manifest.n_items):
        raise DataError(f"{path}: item_idx must be in 1..{manifest.n_items}, found {item.min()}..{item.max()}")
    if len(user) and (user.min() < 0 or user.max() >= manifest.n_users):
        raise DataError(f"{path}: user_idx must be in 0..{manifest.n_users - 1}, found {user.min()}..{user.max()}")
    return Interactions(user, item, ts)


class UserSequences:
    """Each user's items in time order: `items[start[u]:end[u]]`. Built by a stable sort on (user, ts), so equal
    times keep the input's order (the files': ties by item_idx). For the time split the input is already in time
    order and the sort on ts changes nothing; a concatenation of the splits of another protocol (models/protocols.py:
    loo, random) is not, and this puts each user's history back in time order."""

    def __init__(self, data: Interactions, n_users: int):
        order = np.lexsort((data.ts, data.user))  # stable: by user, then ts, then input position
        self.items = data.item[order]
        self.ts = data.ts[order]  # epoch seconds, aligned with items
        self.user_of_position = data.user[order]
        counts = np.bincount(data.user, minlength=n_users)
        self.end = np.cumsum(counts)
        self.start = self.end - counts

    def histories(self, start: np.ndarray, end: np.ndarray, history_len: int) -> np.ndarray:
        """The last `history_len` items of each slice [start, end), right-aligned (most recent last), left-padded
        with PAD. Shape (len(start), history_len), int64."""
        positions = end[:, None] - history_len + np.arange(history_len)[None, :]
        valid = positions >= start[:, None]
        return np.where(valid, self.items[np.maximum(positions, 0)], PAD)

    def user_histories(self, users: np.ndarray, history_len: int) -> np.ndarray:
        """Model input for users at the end of their sequence (evaluation/serving)."""
        return self.histories(self.start[users], self.end[users], history_len)

    def history_times_ms(self, start: np.ndarray, end: np.ndarray, history_len: int) -> np.ndarray:
        """Epoch MILLISECONDS of the items `histories(start, end, history_len)` returns, 0 at padding (the graph
        input `timestamps` of the continuous-time families; the dataset's ts is seconds)."""
        positions = end[:, None] - history_len + np.arange(history_len)[None, :]
        valid = positions >= start[:, None]
        return np.where(valid, self.ts[np.maximum(positions, 0)] * 1000, 0).astype(np.int64)

    def user_history_times_ms(self, users: np.ndarray, history_len: int) -> np.ndarray:
        """history_times_ms of `user_histories(users, history_len)`."""
        return self.history_times_ms(self.start[users], self.end[users], history_len)

    def user_item_pairs(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (row, item) pairs of the given users' sequences; row indexes `users`."""
        return ranges_pairs(self.start[users], self.end[users], self.items)


def ranges_pairs(start: np.ndarray, end: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten the slices values[start[r]:end[r]] into (row, value) pairs without a Python loop."""
    counts = end - start
    rows = np.repeat(np.arange(len(start)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, values[np.repeat(start, counts) + offsets]


class NextItemSamples:
    """Training samples: one per interaction, (the user's previous `history_len` items, the interacted item).
    Samples with an empty history are kept: they train the model's empty-history representation."""

    def __init__(self, data: Interactions, n_users: int, history_len: int):
        self.seq = UserSequences(data, n_users)
        self.history_len = history_len
        # Sample i predicts the item at flat position i from the positions before it within the same user.
        self.user_start = self.seq.start[self.seq.user_of_position]

    def __len__(self) -> int:
        return len(self.seq.items)

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        history = self.seq.histories(self.user_start[indices], indices, self.history_len)
        return torch.from_numpy(history), torch.from_numpy(self.seq.items[indices])

    def batch_with_time(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(history, timestamps ms, query_time ms = the target's time, target) for `uses_time` families."""
        start = self.user_start[indices]
        history = self.seq.histories(start, indices, self.history_len)
        timestamps = self.seq.history_times_ms(start, indices, self.history_len)
        query_time = self.seq.ts[indices].astype(np.int64) * 1000
        return (torch.from_numpy(history), torch.from_numpy(timestamps), torch.from_numpy(query_time),
                torch.from_numpy(self.seq.items[indices]))
