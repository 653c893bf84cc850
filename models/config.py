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
    epochs: int = 5
    batch_size: int = 512  # per process: under DDP the global batch is batch_size * world_size
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    max_steps_per_epoch: Optional[int] = None  # cap for fast tests/smoke runs
    log_every_seconds: float = 1.0

    # Keys that fix the network's shape: a resumed run must keep them.
    ARCHITECTURE_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "model", "embedding_dim", "hidden_dim", "history_len", "n_layers", "n_heads"
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
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"config key 'dropout' must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ConfigError(f"config key 'lr' must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.log_every_seconds < 0:
            raise ConfigError("config keys 'weight_decay' and 'log_every_seconds' must be >= 0")

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
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    return "null" if hint is type(None) else hint.__name__
