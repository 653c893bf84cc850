"""The history window's own items out of a ranking, inside the graph: serving never returns them, so the top K of a
retrieval graph (and the recall stage's N candidates) must not spend slots on them. Scatter-based (no second TopK, so
models/quantize.py's single-TopK assumption holds) and finite (graphs never carry inf - inf)."""

from __future__ import annotations

import torch

MASKED = -1e9


def mask_history(scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """scores (B, n_items), column j = item j + 1; the window's items get MASKED. A leading column for the padding
    index takes the scatter of the 0s, so no branch is needed for padded histories."""
    padded = torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)
    return padded.scatter(1, history, MASKED)[:, 1:]
