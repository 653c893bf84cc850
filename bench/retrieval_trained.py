"""Trained embeddings for bench/retrieval.ts: the item vectors and user vectors of the models bench/quality.ts
trained and cached (~/.cache/recsys/bench/quality/<dataset>/<run>/model.pt; MovieLens-100K, so 1,682 items), for the
families that score by an inner product of a user and an item vector. The user vectors are those of
models/export.py's random verification histories (seed 1), as the export's index check uses.

    OMP_NUM_THREADS=1 PYTHONPATH=. ~/.cache/recsys/venv/bin/python bench/retrieval_trained.py OUT_DIR QUERIES FAMILY...

Per family found (the newest cached model): OUT_DIR/<family>.items.f32 [n, d] and OUT_DIR/<family>.queries.f32
[QUERIES, d] (raw little-endian float32, row-major) and one JSON line; nothing for a family with no cached model.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np
import torch

from models.checkpoint import load as load_checkpoint
from models.export import example_inputs
from models.model_file import load_model

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "recsys", "bench", "quality")


def newest_model(family: str) -> str | None:
    found = [p for p in glob.glob(os.path.join(CACHE, "*", "*", "model.pt"))
             if load_checkpoint(p)["family"] == family]
    return max(found, key=os.path.getmtime) if found else None


def main() -> None:
    out_dir, queries = sys.argv[1], int(sys.argv[2])
    os.makedirs(out_dir, exist_ok=True)
    for family in sys.argv[3:]:
        path = newest_model(family)
        if path is None:
            continue
        model, _ = load_model(path)
        with torch.inference_mode():
            items = model.item_vectors().numpy()
            feed = example_inputs(model, batch=queries, seed=1)
            users = model.user_vectors(*(torch.from_numpy(v) for v in feed.values())).numpy()
        files = {"items": os.path.join(out_dir, f"{family}.items.f32"),
                 "queries": os.path.join(out_dir, f"{family}.queries.f32")}
        np.ascontiguousarray(items, dtype="<f4").tofile(files["items"])
        np.ascontiguousarray(users, dtype="<f4").tofile(files["queries"])
        print(json.dumps({"family": family, "model": path, "n_items": items.shape[0], "dims": items.shape[1],
                          "queries": users.shape[0], **files}), flush=True)


if __name__ == "__main__":
    main()
