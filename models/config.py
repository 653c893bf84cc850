"""Typed training configuration. Unknown keys and wrong types are errors, never silently ignored (a typo in a
hyperparameter must not train the default)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from models.families import FAMILIES


RETRIEVAL_MODES = ("auto", "exact", "hnsw")  # config key `retrieval`


class ConfigError(ValueError):
    """An invalid configuration (unknown key, wrong type, out-of-range value)."""


@dataclass(frozen=True)
class TrainConfig:
    model: str = "two_tower"  # model family, a key of models.families.FAMILIES
    embedding_dim: int = 64
    hidden_dim: int = 128
    history_len: int = 50  # items of history fed to the user tower (most recent last)
    # Sequential family only (models/sequential.py); the two-tower model ignores them.
    n_layers: int = 2  # self-attention blocks
    n_heads: int = 1  # attention heads; must divide embedding_dim
    dropout: float = 0.2
    # Continuous-time family only (ode_rnn, models/continuous_time.py); `gru` reads and ignores them.
    ode_solver: str = "euler"  # "euler" or "rk4": fixed-step solver of the state's ODE between events
    ode_steps: int = 4  # solver steps over each gap (unrolled in the graph: cost grows linearly); see continuous_time
    time_scale_seconds: float = 86400.0  # gap scale: ODE time dt = log1p(gap_seconds / time_scale_seconds)
    # Cascade family only (models/cascade.py): recall -> DIN rank -> RankNet re-rank. The recall stage trains with the
    # keys its family uses alone (epochs, lr, batch_size, ...); the rank and re-rank stages with the rank_* keys.
    recall_model: str = "lightgcn"  # the recall stage's family: a retrieval family of models/families.py
    recall_n: int = 100  # candidates the recall stage passes to the ranker (N)
    rerank_m: int = 20  # candidates the ranker passes to the re-ranker (M <= N)
    diversity_weight: float = 0.0  # re-ranker's score-time penalty on similarity to higher-ranked items (ranknet.py)
    # Defaults chosen on ML-100K's valid split (train as history), never on test: see models/cascade.py.
    rank_epochs: int = 3  # DIN ranker epochs
    rank_lr: float = 1e-3  # Adam's lr for the rank and re-rank stages (`lr` is the recall stage's)
    rank_batch_size: int = 512  # per process, rank and re-rank stages (`batch_size` is the recall stage's)
    rank_negatives: int = 7  # negatives drawn from the recall candidates per training target
    rank_samples: int = 20_000  # the ranker trains on (at most) this many most recent training interactions
    rank_attention_dim: int = 16  # hidden width of DIN's local activation unit
    rank_history_len: int = 20  # DIN attends over this many most recent history items (its cost is linear in it)
    rerank_epochs: int = 8  # RankNet re-ranker epochs
    rerank_samples: int = 5_000  # the re-ranker trains on the ranker's this many most recent samples (at most)
    # iALS family only (mf, models/mf.py): epochs = ALS iterations; lr, batch_size and dropout are not used.
    als_reg: float = 100.0  # L2 weight on user and item factors (lambda); > 0 keeps every solve positive definite
    als_alpha: float = 20.0  # confidence = 1 + als_alpha * interaction count (reg/alpha: best on ML-100K valid)
    cg_steps: int = 8  # conjugate-gradient steps of the user vector's fold-in solve in the serving graph
    # LightGCN family only (lightgcn, models/lightgcn.py); BPR, Adam with `lr`, `batch_size` triples per process.
    n_gcn_layers: int = 2  # propagation layers K over the normalised user-item graph
    gcn_reg: float = 1e-4  # L2 weight on the ego embeddings of each batch's users/items (per triple)
    # Retrieval at export (models/ann_export.py), single-stage retrieval families only: "exact" (the in-graph top-K
    # only), "hnsw" (also the files an HNSW index is built from), "auto" (hnsw when n_items >= ann_min_items).
    retrieval: str = "auto"
    ann_min_items: int = 100_000
    # Recent-popularity prior (models/recent_prior.py), single-stage retrieval families: scores + beta * log1p(the
    # item's interactions in the last recent_prior_days days), beta chosen on the valid split from
    # recent_prior_betas (null: recent_prior.DEFAULT_BETAS; 0 is always tried). 0 days = off.
    recent_prior_days: float = 0.0
    recent_prior_betas: Optional[list[float]] = None
    epochs: int = 5
    batch_size: int = 512  # per process: under DDP the global batch is batch_size * world_size
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    max_steps_per_epoch: Optional[int] = None  # cap for fast tests/smoke runs
    log_every_seconds: float = 1.0

    # Keys that fix the network's shape: a resumed run must keep them.
    ARCHITECTURE_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "model", "embedding_dim", "hidden_dim", "history_len", "n_layers", "n_heads", "recall_model",
        "rank_attention_dim", "n_gcn_layers"
    )

    def __post_init__(self) -> None:
        if self.model not in FAMILIES:
            raise ConfigError(f"unknown model family {self.model!r} (known: {', '.join(sorted(FAMILIES))})")
        for key in ("embedding_dim", "hidden_dim", "history_len", "n_layers", "n_heads", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"config key 'max_steps_per_epoch' must be >= 1 or null, got {self.max_steps_per_epoch}")
        if self.embedding_dim % self.n_heads:
            raise ConfigError(f"config key 'n_heads' ({self.n_heads}) must divide embedding_dim ({self.embedding_dim})")
        if self.ode_solver not in ("euler", "rk4"):
            raise ConfigError(f"config key 'ode_solver' must be 'euler' or 'rk4', got {self.ode_solver!r}")
        if self.ode_steps < 1:
            raise ConfigError(f"config key 'ode_steps' must be >= 1, got {self.ode_steps}")
        if not (0 < self.time_scale_seconds < float("inf")):
            raise ConfigError(f"config key 'time_scale_seconds' must be finite and > 0, got {self.time_scale_seconds}")
        if self.model == "cascade":
            self._check_cascade()
        if self.retrieval not in RETRIEVAL_MODES:
            raise ConfigError(f"config key 'retrieval' must be one of {', '.join(RETRIEVAL_MODES)}, "
                              f"got {self.retrieval!r}")
        if self.retrieval == "hnsw" and self.model == "cascade":
            raise ConfigError("config key 'retrieval' is 'hnsw', but an HNSW index applies to single-stage retrieval "
                              "families only, not to model 'cascade' (use 'auto' or 'exact')")
        if self.ann_min_items < 1:
            raise ConfigError(f"config key 'ann_min_items' must be >= 1, got {self.ann_min_items}")
        self._check_recent_prior()
        if not (0 < self.als_reg < float("inf")):
            raise ConfigError(f"config key 'als_reg' must be finite and > 0, got {self.als_reg}")
        if not (0 <= self.als_alpha < float("inf")):
            raise ConfigError(f"config key 'als_alpha' must be finite and >= 0, got {self.als_alpha}")
        for key in ("cg_steps", "n_gcn_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")
        if not (0 <= self.gcn_reg < float("inf")):
            raise ConfigError(f"config key 'gcn_reg' must be finite and >= 0, got {self.gcn_reg}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"config key 'dropout' must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ConfigError(f"config key 'lr' must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.log_every_seconds < 0:
            raise ConfigError("config keys 'weight_decay' and 'log_every_seconds' must be >= 0")

    def _check_cascade(self) -> None:
        recall = FAMILIES.get(self.recall_model)
        if recall is None or self.recall_model == "cascade" or getattr(recall, "uses_time", False):
            known = sorted(n for n, f in FAMILIES.items() if n != "cascade" and not getattr(f, "uses_time", False))
            raise ConfigError(f"config key 'recall_model' must be a retrieval family ({', '.join(known)}), "
                              f"got {self.recall_model!r}")
        for key in ("recall_n", "rerank_m", "rank_epochs", "rank_batch_size", "rank_negatives", "rank_samples",
                    "rank_attention_dim", "rank_history_len", "rerank_epochs", "rerank_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.rank_lr < float("inf"):
            raise ConfigError(f"config key 'rank_lr' must be finite and > 0, got {self.rank_lr}")
        if self.rerank_m > self.recall_n:
            raise ConfigError(f"config key 'rerank_m' ({self.rerank_m}) must be <= recall_n ({self.recall_n})")
        if not 0 <= self.diversity_weight < float("inf"):
            raise ConfigError(f"config key 'diversity_weight' must be finite and >= 0, got {self.diversity_weight}")

    def _check_recent_prior(self) -> None:
        if not (0 <= self.recent_prior_days < float("inf")):
            raise ConfigError(f"config key 'recent_prior_days' must be finite and >= 0, got {self.recent_prior_days}")
        if self.recent_prior_days > 0 and self.model == "cascade":
            raise ConfigError("config key 'recent_prior_days' applies to single-stage retrieval families only, not to "
                              "model 'cascade' (set it to 0)")
        betas = self.recent_prior_betas
        if betas is not None and (not betas or not all(0 <= b < float("inf") for b in betas)):
            raise ConfigError(f"config key 'recent_prior_betas' must be a non-empty list of finite numbers >= 0, "
                              f"got {betas!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        if not isinstance(values, dict):
            raise ConfigError(f"config must be a JSON object, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        known = [f.name for f in dataclasses.fields(cls)]
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown config key {key!r} (known: {', '.join(known)})")
            if not _has_type(value, hints[key]):
                raise ConfigError(f"config key {key!r} expects {_type_name(hints[key])}, got {value!r}")
        # JSON has one number type: accept 1 for a float field, store it as a float.
        coerced = {k: float(v) if hints[k] is float else v for k, v in values.items()}
        if isinstance(coerced.get("recent_prior_betas"), (list, tuple)):
            coerced["recent_prior_betas"] = [float(b) for b in coerced["recent_prior_betas"]]
        return cls(**coerced)

    @classmethod
    def from_json(cls, text: str | None) -> "TrainConfig":
        if not text:
            return cls()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc}") from None
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _has_type(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # bool is an int subclass; true is never a valid epoch count
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    if typing.get_origin(hint) is list:  # a JSON array (a tuple: a saved config read back)
        return isinstance(value, (list, tuple)) and all(_has_type(v, typing.get_args(hint)[0]) for v in value)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return "null" if hint is type(None) else hint.__name__
