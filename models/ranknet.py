"""RankNet re-ranker (Burges et al., "Learning to Rank using Gradient Descent", ICML 2005): the last stage of the
cascade (models/cascade.py). It re-orders the ranker's top M for one user.

score s(c) = a · r(c) + MLP([r(c), r(c) - max r, e_c, u * e_c])
    r      the DIN ranker's logit of the candidate (the graph input `rank_scores`); r - max r is its gap to the best
           candidate of the list, so the score sees the list it is in
    e_c    the re-ranker's own item embedding; u = mean of the embeddings of the user's real history items
    a      a learned scale, initialised to 1, and the MLP's last layer to 0: an untrained re-ranker keeps the ranker's
           order exactly, so training can only move it away from that order where the pairs say so.
Loss: RankNet's pairwise cross-entropy with target probability 1 for (relevant, non-relevant) pairs of the same
list: mean over pairs of log(1 + exp(-(s_relevant - s_other))) (`pairwise_loss`).

Diversity (`diversity_weight` w > 0): a score-time term, MMR-like, computed inside the graph in one pass:
    final(c) = s(c) - w · max(0, max over candidates j with s(j) > s(c) of cos(v_c, v_j))
v = the recall stage's item vectors, centred and frozen (a buffer): each candidate is penalised by its similarity to
the most similar candidate the re-ranker puts above it; the top candidate is never penalised. w is in units of the
re-ranker's score. Applied at scoring time only (eval mode: the exported graph and the cascade's forward), not in
the training loss: trained through, the relevance score would learn to undo it (and learned embeddings would learn to
look dissimilar). Unlike greedy MMR it needs no sequential selection, so it exports as one graph whose per-candidate
scores serving sorts. On ML-100K (LightGCN recall) its effect is small: w = 2 lowers the warm users' intra-list
similarity@10 from 0.782 to 0.777 for NDCG@10 0.331 -> 0.329, since a user's candidates are close neighbours.

Graph (models/cascade_export.py): history int64 [B, L], candidates int64 [B, C], rank_scores float32 [B, C]
-> scores float32 [B, C] in the candidates' order (C dynamic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_loss(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """RankNet loss over every (relevant, non-relevant) pair within each row. scores (B, C), relevant bool (B, C).
    Rows without such a pair contribute nothing; returns the mean over all pairs (0 when there are none)."""
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # (B, C, C): s_i - s_j
    pairs = (relevant.unsqueeze(2) & ~relevant.unsqueeze(1)).to(scores.dtype)
    n_pairs = pairs.sum()
    return (F.softplus(-diff) * pairs).sum() / n_pairs.clamp(min=1)


class RankNet(nn.Module):
    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, diversity_weight: float = 0.0):
        super().__init__()
        self.n_items = n_items
        self.diversity_weight = diversity_weight
        self.item_embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.rank_scale = nn.Parameter(torch.ones(()))
        self.mlp = nn.Sequential(nn.Linear(2 + 2 * embedding_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        # Unit-norm item vectors for the diversity term; row 0 (padding) is zero. Set by set_similarity_vectors.
        self.register_buffer("similarity_vectors", torch.zeros(n_items + 1, embedding_dim))

    def set_similarity_vectors(self, vectors: torch.Tensor) -> None:
        """vectors (n_items, d): the recall stage's item vectors (the cascade's embedding width). Centred before
        normalising: propagated or co-trained embeddings share a large common direction (LightGCN's on ML-100K have a
        mean pairwise cosine of 0.8), which would make every candidate look alike and the penalty a constant."""
        if vectors.shape != self.similarity_vectors[1:].shape:
            raise ValueError(f"similarity vectors must have shape {tuple(self.similarity_vectors[1:].shape)}, "
                             f"got {tuple(vectors.shape)}")
        with torch.no_grad():
            self.similarity_vectors[1:] = F.normalize(vectors - vectors.mean(dim=0), dim=1)

    def relevance(self, history: torch.Tensor, candidates: torch.Tensor, rank_scores: torch.Tensor) -> torch.Tensor:
        """The trained score s (B, C), without the diversity term."""
        real = (history > 0).unsqueeze(-1).to(rank_scores.dtype)
        user = (self.item_embedding(history) * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)  # (B, d)
        e = self.item_embedding(candidates)  # (B, C, d)
        r = rank_scores.unsqueeze(-1)
        gap = r - rank_scores.max(dim=1, keepdim=True).values.unsqueeze(-1)
        features = torch.cat([r, gap, e, user.unsqueeze(1) * e], dim=-1)
        return self.rank_scale * rank_scores + self.mlp(features).squeeze(-1)

    def diversity_penalty(self, candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """(B, C): max cosine similarity of each candidate to the candidates scored strictly above it (0 if none)."""
        v = self.similarity_vectors[candidates]  # (B, C, d), unit norm
        similarity = v @ v.transpose(1, 2)  # (B, C, C)
        above = scores.unsqueeze(1) > scores.unsqueeze(2)  # [b, i, j]: candidate j is above candidate i
        return torch.where(above, similarity, torch.zeros_like(similarity)).amax(dim=2).clamp(min=0)

    def forward(self, history: torch.Tensor, candidates: torch.Tensor, rank_scores: torch.Tensor) -> torch.Tensor:
        s = self.relevance(history, candidates, rank_scores)
        if self.diversity_weight > 0 and not self.training:  # scoring time only (module docstring)
            s = s - self.diversity_weight * self.diversity_penalty(candidates, s)
        return s
