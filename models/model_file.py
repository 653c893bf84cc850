"""A trained model back from its file: a model file or a training checkpoint (both self-describing: family, config,
catalogue size and weights). Kept apart from models/families.py so that the family registry imports nothing of the
config that validates family names against it."""

from __future__ import annotations

from typing import Any

from torch import nn

from models import checkpoint
from models.config import TrainConfig
from models.families import get_family


def load_model(path: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model (in eval mode) from a model file or a training checkpoint; returns (model, file contents)."""
    obj = checkpoint.load(path)
    config = TrainConfig.from_dict(obj["config"])
    model = get_family(obj["family"]).from_config(config, int(obj["n_items"]))
    model.load_state_dict(obj["model_state"])
    return model.eval(), obj
