"""A trained model back from its file: a model file or a training checkpoint (both self-describing: family, config,
catalogue size and weights). Kept apart from models/families.py so that the family registry imports nothing of the
config that validates family names against it."""

from __future__ import annotations

from typing import Any

from torch import nn

from models import checkpoint
from models.config import TrainConfig
from models.families import get_family
from models.recent_prior import RecentPrior


def load_model(path: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model (in eval mode) from a model file or a training checkpoint; returns (model, file contents)."""
    obj = checkpoint.load(path)
    config = TrainConfig.from_dict(obj["config"])
    model = get_family(obj["family"]).from_config(config, int(obj["n_items"]))
    # A model file trained with the recent-popularity prior carries it (models/recent_prior.py); a training
    # checkpoint of the same run holds the base alone (the prior is fitted after training).
    if config.recent_prior_days > 0 and obj.get("format") == checkpoint.MODEL_FORMAT:
        model = RecentPrior(model)
    model.load_state_dict(obj["model_state"])
    return model.eval(), obj
