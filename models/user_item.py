"""The train split as a user-item matrix, for the families that fit on the matrix rather than on next-item samples
(models/mf.py, models/lightgcn.py), and the in-graph helper that treats a serving history as a bag of items.

A matrix holds each distinct (user, item) pair once with its interaction count, sorted by (user, item). Columns are
0-based (column j = item_idx j + 1, like the score matrices of models/families.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data import DataError, Manifest, read_split


@dataclass(frozen=True)
class UserItemMatrix:
    n_users: int
    n_items: int
    user: np.ndarray  # int64, row of each distinct pair
    item: np.ndarray  # int64, 0-based column of each distinct pair
    count: np.ndarray  # float64, interactions of the pair (>= 1)
    n_interactions: int  # rows of the split (repeats included)

    def __len__(self) -> int:
        return len(self.user)

    def by_user(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR over users: (indptr (n_users + 1), columns, counts)."""
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.user, minlength=self.n_users))])
        return indptr, self.item, self.count

    def by_item(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR over items: (indptr (n_items + 1), users, counts)."""
        order = np.argsort(self.item, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.item, minlength=self.n_items))])
        return indptr, self.user[order], self.count[order]

    def user_degree(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users)

    def item_degree(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)


def read_user_item(data_dir: str, manifest: Manifest, split: str = "train") -> UserItemMatrix:
    data = read_split(data_dir, split, manifest)
    if len(data) == 0:
        raise DataError(f"{data_dir}: the {split} split is empty")
    width = manifest.n_items + 1
    keys, counts = np.unique(data.user * width + data.item, return_counts=True)  # sorted by (user, item)
    return UserItemMatrix(
        n_users=manifest.n_users, n_items=manifest.n_items, user=keys // width, item=keys % width - 1,
        count=counts.astype(np.float64), n_interactions=len(data),
    )


def multiplicity(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """history int64 (B, L), 0 = padding -> float32 (B, L): how often the item at each position occurs in its row
    (padding positions: the number of padding positions; their item factors are zero anyway). A bag-of-items model
    needs each item's count (sum over positions) and the set of items (each position weighted 1 / multiplicity).
    One ScatterElements-add into a (B, n_items + 1) table, the size of the score matrix the graph makes anyway,
    rather than an L x L equality matrix; and no extra TopK in the graph, whose only TopK stays the retrieval's
    (models/quantize.py finds it by being the only one)."""
    ones = torch.ones_like(history, dtype=torch.float32)
    table = torch.zeros(history.shape[0], n_items + 1, dtype=torch.float32).scatter_add(1, history, ones)
    return table.gather(1, history)
