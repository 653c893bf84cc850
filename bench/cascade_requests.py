"""The requests of the cascade/router benchmark: each warm test user of a dataset version (history before the test
window) with their whole history (train + valid item indices, oldest first: the server excludes all of it, the graphs
read the last history_len) and their test items not in it.

    python bench/cascade_requests.py --data-dir D --out requests.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from models.data import Interactions, UserSequences, read_manifest, read_split  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    manifest = read_manifest(args.data_dir)
    train, valid, test = (read_split(args.data_dir, s, manifest) for s in ("train", "valid", "test"))
    seen = UserSequences(Interactions.concat(train, valid), manifest.n_users)
    targets = UserSequences(test, manifest.n_users)
    requests = []
    for u in np.flatnonzero((targets.end > targets.start) & (seen.end > seen.start)):
        history = seen.items[seen.start[u] : seen.end[u]]
        relevant = sorted(set(targets.items[targets.start[u] : targets.end[u]].tolist()) - set(history.tolist()))
        if relevant:
            requests.append({"history": history.tolist(), "relevant": relevant})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"n_items": manifest.n_items, "requests": requests}, f)
    print(json.dumps({"event": "result", "n_requests": len(requests)}))


if __name__ == "__main__":
    main()
