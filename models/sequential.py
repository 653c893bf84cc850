"""SASRec-style sequential recommender: causal self-attention over the user's time-ordered history.

input:  item embedding (row 0 = padding, scaled by sqrt(d)) + a learned embedding of the position counted from the
        most recent item (the history is left-padded, so position history_len - 1 is always the latest item)
blocks: n_layers x [pre-LayerNorm causal multi-head self-attention, pre-LayerNorm feed-forward (hidden_dim)], each
        added to the residual stream after dropout; padding positions are never attended to and are zeroed after
        every block. Dropout sits only on the input and the two residual branches: on CPU, drawing the dropout masks
        of the attention weights and of the feed-forward's hidden layer took a third of a training step.
user vector: LayerNorm of the representation at the last position (an empty history uses a learned vector instead)
item vectors: the input item embeddings (shared, as in SASRec), so score(user, item) = dot(user vector, embedding)

The contract of models/families.py holds (user_vectors @ item_vectors().T == forward), so models/export.py builds the
same serving graph as for the two-tower model. Only the last position is scored: the final block computes its query,
attention and feed-forward for that position alone (keys and values still cover the whole history), which saves most
of its cost. Attention is written out with MatMul/Softmax and a finite mask value: it exports with the dynamo
exporter and stays finite for rows whose keys are all padding.

Train it with the usual entry point, e.g.
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m models.train --data-dir D --out-dir O \
        --config-json '{"model": "sequential", "history_len": 50, "n_layers": 2, "dropout": 0.2}'
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

MASKED = -1e9  # finite: a query whose keys are all masked gets a uniform (harmless) softmax instead of NaN


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"embedding_dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, queries: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d) keys/values; queries: (B, Q, d); bias: (B, 1, Q, L) additive mask. Returns (B, Q, d)."""
        b, length, d = x.shape
        h, hd = self.n_heads, d // self.n_heads
        k, v = self.key_value(x).view(b, length, 2, h, hd).permute(2, 0, 3, 1, 4)  # (B, h, L, hd) each
        q = self.query(queries).view(b, -1, h, hd).transpose(1, 2)  # (B, h, Q, hd)
        weights = torch.softmax(q @ k.transpose(-1, -2) * hd**-0.5 + bias, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(b, -1, d)
        return self.out(y)


class Block(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = CausalSelfAttention(dim, n_heads)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, last_only: bool) -> torch.Tensor:
        """x: (B, L, d). With last_only, returns (B, 1, d): the last position only."""
        normed = self.norm_attention(x)
        if last_only:
            queries, residual, bias = normed[:, -1:], x[:, -1:], bias[:, :, -1:]
        else:
            queries, residual = normed, x
        y = residual + self.dropout(self.attention(normed, queries, bias))
        return y + self.dropout(self.ffn(self.norm_ffn(y)))


class Sequential(nn.Module):
    family = "sequential"

    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, history_len: int, n_layers: int = 2,
                 n_heads: int = 1, dropout: float = 0.2):
        super().__init__()
        self.n_items = n_items
        self.history_len = history_len
        self.scale = math.sqrt(embedding_dim)
        self.item_embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.position_embedding = nn.Parameter(torch.randn(history_len, embedding_dim) * 0.02)
        self.empty_history = nn.Parameter(torch.zeros(embedding_dim))
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embedding_dim, hidden_dim, n_heads, dropout) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(embedding_dim)
        causal = torch.ones(history_len, history_len).tril().bool()
        self.register_buffer("causal", causal, persistent=False)

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "Sequential":
        return cls(n_items, config.embedding_dim, config.hidden_dim, config.history_len, config.n_layers,
                   config.n_heads, config.dropout)

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """history: int64 (batch, history_len), left-padded with 0, most recent last. Returns (batch, d)."""
        real = history > 0  # (B, L)
        x = self.item_embedding(history) * self.scale + self.position_embedding
        keep = real.unsqueeze(-1).to(x.dtype)
        x = self.input_dropout(x) * keep
        allowed = self.causal.unsqueeze(0) & real.unsqueeze(1)  # (B, L query, L key)
        bias = torch.where(allowed, 0.0, MASKED).unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        for i, block in enumerate(self.blocks):
            last_only = i == len(self.blocks) - 1
            x = block(x, bias, last_only)
            if not last_only:
                x = x * keep
        last = self.final_norm(x[:, -1])  # the most recent item's position (real whenever the history is not empty)
        return torch.where(real.any(dim=1, keepdim=True), last, self.empty_history)

    def item_vectors(self) -> torch.Tensor:
        """Vectors of the real items 1..n_items, shape (n_items, d): row j is item j + 1."""
        return self.item_embedding.weight[1:]

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Scores of all real items, (batch, n_items); column j is item j + 1."""
        return self.user_vectors(history) @ self.item_vectors().T
