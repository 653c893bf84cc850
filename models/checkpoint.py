"""Self-describing checkpoints and model files, written atomically, loaded without unpickling code.

Both kinds hold everything needed to rebuild the model without the training command line:
  format, format_version, family, config (dict), n_items, history_len, model_state, torch_version
A training checkpoint (`O/checkpoints/epoch-<e>.pt`) adds: epoch (completed, from 1), loss, optimizer_state,
world_size, rng_states (one per rank). The final model (`O/model.pt`) adds: epochs, final_loss.

Files are loaded with `torch.load(weights_only=True)`: artefacts come back from object storage, and a pickle that can
run code must not be trusted. So everything stored is tensors, numbers, strings, lists, tuples and dicts.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "recsys-checkpoint"
MODEL_FORMAT = "recsys-model"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """The file is not a checkpoint/model this code can read."""


def save_atomic(obj: dict[str, Any], path: str) -> str:
    """torch.save to a temporary file in the same directory, fsync, then rename: readers (and a resume after a
    crash) see either the previous file or the complete new one, never a torn write. Returns the absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load(path: str, expect: tuple[str, ...] = (CHECKPOINT_FORMAT, MODEL_FORMAT)) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint/model file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file or a foreign pickle
        raise CheckpointError(f"{path} is not a readable recsys checkpoint: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") not in expect:
        raise CheckpointError(f"{path} is not a {' or '.join(expect)} file")
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {obj.get('format_version')}, expected {FORMAT_VERSION}")
    return obj


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),  # ndarray -> list: weights_only-safe
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), *rest))
    random.setstate(tuple(state["python"]) if isinstance(state["python"], list) else state["python"])
