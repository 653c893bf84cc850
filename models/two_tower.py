"""Two-tower retrieval model.

item tower: item embedding (row 0 = padding) -> residual MLP -> d
user tower: masked mean of the embeddings of the user's last `history_len` items -> residual MLP -> d
            (an empty history uses a learned vector instead, so cold users still get a finite representation)
score(user, item) = dot(user vector, item vector)

There is no user-id embedding: any user with a history (or none) can be scored, including users unseen in training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ResidualMLP(nn.Module):
    """x + MLP(x): starts close to the identity, so the towers train quickly from the raw embeddings."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class TwoTower(nn.Module):
    family = "two_tower"

    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, history_len: int):
        super().__init__()
        self.n_items = n_items
        self.history_len = history_len
        self.item_embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()  # re-zero the padding row after the custom init
        self.empty_history = nn.Parameter(torch.zeros(embedding_dim))
        self.item_tower = ResidualMLP(embedding_dim, hidden_dim)
        self.user_tower = ResidualMLP(embedding_dim, hidden_dim)

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "TwoTower":
        return cls(n_items, config.embedding_dim, config.hidden_dim, config.history_len)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """history: int64 (batch, history_len), item indices, 0 = padding. Returns (batch, d)."""
        mask = (history > 0).unsqueeze(-1)
        count = mask.sum(dim=1)
        # The padding row is zero, so the plain sum over the window is the sum over real items.
        mean = self.item_embedding(history).sum(dim=1) / count.clamp(min=1)
        pooled = torch.where(count > 0, mean, self.empty_history)
        return self.user_tower(pooled)

    def item_vectors(self) -> torch.Tensor:
        """Vectors of the real items 1..n_items, shape (n_items, d): row j is item j + 1."""
        return self.item_tower(self.item_embedding.weight[1:])

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Scores of all real items, (batch, n_items); column j is item j + 1. The padding index has no column,
        so it can never be trained towards nor recommended."""
        return self.user_vectors(history) @ self.item_vectors().T
