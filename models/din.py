"""DIN ranker (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018): the rank stage of
the cascade (models/cascade.py). It scores a set of candidates for one user, each candidate against the user's history.

local activation unit: for history item h and candidate c, a(h, c) = MLP([h, c, h - c, h * c]) -> one weight
                       (PReLU hidden layer, linear output). As in the paper the weights are NOT softmax-normalised:
                       the pooled vector's norm keeps the intensity of the user's interest in the candidate.
pooling:               pooled(c) = sum over the real history items of a(h, c) * h (padding contributes nothing)
prediction MLP:        [pooled, c, pooled * c] -> PReLU MLP -> logit, plus a per-item bias, plus (optional) a learned
                       multiple of a prior score per candidate: in the cascade, the recall stage's score, so the
                       ranker refines the recall stage's order instead of starting from nothing (models/cascade.py)

The features are item ids only (the datasets carry no side information), so the paper's user profile, shop, category
and context groups have no counterpart here. Dice and the adaptive regulariser are replaced by PReLU and weight decay.

The first linear layer of the activation unit is split by input group: W·[h, c, h-c, h*c] = (W1+W3)·h + (W2-W3)·c +
W4·(h*c), the same function computed once per history item and once per candidate instead of once per (h, c) pair.

Graph (models/cascade_export.py): history int64 [B, L], candidates int64 [B, C] (1-based item indices, C dynamic)
-> scores float32 [B, C], one logit per candidate in the candidates' order.
"""

from __future__ import annotations

import torch
from torch import nn


class PReLU(nn.Module):
    """PReLU with one learned slope per feature of the LAST dimension (nn.PReLU's channels are dimension 1)."""

    def __init__(self, features: int, init: float = 0.25):
        super().__init__()
        self.slope = nn.Parameter(torch.full((features,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=0) + self.slope * torch.clamp(x, max=0)


class ActivationUnit(nn.Module):
    """a(h, c) = w2 · PReLU(W·[h, c, h - c, h * c] + b) + b2, for every (history item, candidate) pair."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.first = nn.Linear(4 * dim, hidden)
        self.act = PReLU(hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """history (B, L, d), candidates (B, C, d) -> weights (B, C, L)."""
        d = history.shape[-1]
        w_h, w_c, w_diff, w_prod = self.first.weight.split(d, dim=1)  # each (hidden, d)
        from_history = history @ (w_h + w_diff).T  # (B, L, hidden)
        from_candidate = candidates @ (w_c - w_diff).T + self.first.bias  # (B, C, hidden)
        product = (candidates.unsqueeze(2) * history.unsqueeze(1)) @ w_prod.T  # (B, C, L, hidden)
        hidden = self.act(product + from_history.unsqueeze(1) + from_candidate.unsqueeze(2))
        return self.out(hidden).squeeze(-1)


class DIN(nn.Module):
    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, attention_dim: int, history_len: int,
                 dropout: float = 0.0):
        super().__init__()
        self.n_items = n_items
        self.history_len = history_len  # attends over the most recent history_len items of its input
        self.item_embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.item_bias.weight)
        self.prior_scale = nn.Parameter(torch.ones(()))
        self.attention = ActivationUnit(embedding_dim, attention_dim)
        self.mlp = nn.Sequential(
            nn.Linear(3 * embedding_dim, hidden_dim), PReLU(hidden_dim), nn.Dropout(dropout),
            nn.Linear(hidden_dim, max(1, hidden_dim // 2)), PReLU(max(1, hidden_dim // 2)),
            nn.Linear(max(1, hidden_dim // 2), 1),
        )

    def init_item_embedding(self, vectors: torch.Tensor) -> None:
        """Start from another stage's item vectors (n_items, d), rescaled to this embedding's initial norm: the
        ranker then begins with the recall stage's notion of item similarity instead of noise."""
        with torch.no_grad():
            scale = vectors.norm(dim=1).mean().clamp(min=1e-12)
            target = self.item_embedding.weight[1:].norm(dim=1).mean()
            self.item_embedding.weight[1:] = vectors * (target / scale)

    def forward(self, history: torch.Tensor, candidates: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """history int64 (B, L), 0 = padding; candidates int64 (B, C), 1-based; prior float (B, C) or None.
        Returns logits (B, C)."""
        history = history[:, -self.history_len :]  # the cost is B x C x L x attention_dim: L bounds it
        h = self.item_embedding(history)  # padding rows are zero
        c = self.item_embedding(candidates)
        weights = self.attention(h, c) * (history > 0).unsqueeze(1).to(h.dtype)  # (B, C, L), padding -> 0
        pooled = weights @ h  # (B, C, d): sum_j a(h_j, c) h_j
        logits = self.mlp(torch.cat([pooled, c, pooled * c], dim=-1)).squeeze(-1)
        logits = logits + self.item_bias(candidates).squeeze(-1)
        return logits if prior is None else logits + self.prior_scale * prior
