"""Registry of model families: name -> class. Adding a family means adding a file and one line here.

A family class is an nn.Module with:
  family: str                                  its registry name
  from_config(config, n_items) -> module       build from a TrainConfig
  n_items, history_len                         attributes
  forward(history) -> (batch, n_items) scores  history int64 (batch, history_len), 0 = padding; column j = item j+1
  user_vectors(history) -> (batch, d)          for export: scores = user_vectors @ item_vectors().T
  item_vectors() -> (n_items, d)
"""

from __future__ import annotations

from torch import nn

from models.sequential import Sequential
from models.two_tower import TwoTower

FAMILIES: dict[str, type[nn.Module]] = {
    TwoTower.family: TwoTower,
    Sequential.family: Sequential,
}


def get_family(name: str) -> type[nn.Module]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(sorted(FAMILIES))})") from None

