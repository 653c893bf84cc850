"""Registry of model families: name -> class. Adding a family means adding a file and one line here.

A family class is an nn.Module with:
  family: str                                  its registry name
  from_config(config, n_items) -> module       build from a TrainConfig
  n_items, history_len                         attributes
  forward(history) -> (batch, n_items) scores  history int64 (batch, history_len), 0 = padding; column j = item j+1
  user_vectors(history) -> (batch, d)          for export: scores = user_vectors @ item_vectors().T
  item_vectors() -> (n_items, d)
A family with `uses_time = True` (models/continuous_time.py) takes (history, timestamps, query_time) in forward and
user_vectors instead: timestamps int64 (batch, history_len) epoch ms, 0 at padding; query_time int64 (batch,) epoch ms.
A multi-stage family (`cascade`, models/cascade.py) has no user_vectors/item_vectors: it has stage_rankings(history)
and is exported as one graph per stage by models/cascade_export.py.
A family may also bring its own training procedure, `fit` (iALS: models/mf.py, LightGCN: models/lightgcn.py, the
cascade); models/train.py documents the hook.
"""

from __future__ import annotations

from torch import nn

from models.cascade import Cascade
from models.continuous_time import Gru, OdeRnn
from models.lightgcn import LightGCN
from models.mf import ImplicitMF
from models.sequential import Sequential
from models.two_tower import TwoTower

FAMILIES: dict[str, type[nn.Module]] = {
    TwoTower.family: TwoTower,
    Sequential.family: Sequential,
    OdeRnn.family: OdeRnn,
    Gru.family: Gru,
    Cascade.family: Cascade,
    ImplicitMF.family: ImplicitMF,
    LightGCN.family: LightGCN,
}


def get_family(name: str) -> type[nn.Module]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(sorted(FAMILIES))})") from None

