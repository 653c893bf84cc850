"""Which evaluated users belong to which slice: the populations a model can win on average and still lose on.

Why: an average hides the users a new model serves worse (the cold, the tail, the returning). Gates need the same
metrics per slice, so slice membership is decided here once, from the train/valid history and the test items only,
never from any model's output. Definitions (all thresholds land in the report):

  activity=cold|light|heavy   cold: empty history (train+valid). Warm users split at the median history length of
                              the warm evaluated users: light <= median < heavy. A partition of the users.
  history=some|none           some: every user with a history (light + heavy), the users the model ranks for in
                              serving (a request without history gets the popularity fallback); gates may judge on it.
  popularity=head|torso|tail  items sorted by train interactions (most first, ties by index); head = the items that
                              carry the first 20% of train interactions (an item straddling the boundary is head),
                              tail = the items that carry the last 20% (and every item absent from train), torso =
                              the rest. A user is in a class when at least one of their relevant test items is:
                              a user can be in several classes, so these slices overlap.
  new_items=yes|no            yes: at least one relevant test item has no train interaction. A partition.
  recency=<1d|1-7d|7-30d|>30d|none
                              time from the user's last history interaction to the start of the test window
                              (bins are half-open: [0, 1d), [1d, 7d), [7d, 30d), [30d, inf)); none: empty history.
                              A partition.

    from models.slices import SliceInputs, item_popularity_classes, slice_masks
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

HEAD_SHARE = 0.2  # head: items carrying the first 20% of train interactions
TAIL_SHARE = 0.2  # tail: items carrying the last 20% (plus items never seen in train)
DAY = 86_400
RECENCY_BINS: tuple[tuple[str, float, float], ...] = (
    ("<1d", 0, DAY), ("1-7d", DAY, 7 * DAY), ("7-30d", 7 * DAY, 30 * DAY), (">30d", 30 * DAY, np.inf),
)
HEAD, TORSO, TAIL = 0, 1, 2
POPULARITY_CLASSES = ("head", "torso", "tail")


def item_popularity_classes(counts: np.ndarray) -> np.ndarray:
    """Class (HEAD/TORSO/TAIL) of each item from its train interaction count; counts[j] is item j + 1."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    classes = np.full(len(counts), TAIL, dtype=np.int8)
    if total <= 0:
        return classes
    order = np.argsort(-counts, kind="stable")
    before = (np.cumsum(counts[order]) - counts[order]) / total  # share of volume carried by more popular items
    ranked = np.where(before < HEAD_SHARE, HEAD, np.where(before < 1 - TAIL_SHARE, TORSO, TAIL))
    ranked[counts[order] == 0] = TAIL
    classes[order] = ranked
    return classes


@dataclass
class SliceInputs:
    """Per evaluated user (one row each, in evaluation order)."""

    history_len: np.ndarray  # int: train+valid interactions
    since_last: np.ndarray  # float seconds from the last history interaction to the test window start; nan if none
    has_class: np.ndarray  # bool (users, 3): some relevant test item is head / torso / tail
    has_new_item: np.ndarray  # bool: some relevant test item has no train interaction


def slice_masks(inputs: SliceInputs) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Slice name -> boolean mask over the evaluated users, and the thresholds used (for the report)."""
    n = len(inputs.history_len)
    hist = np.asarray(inputs.history_len)
    cold = hist == 0
    median = float(np.median(hist[~cold])) if (~cold).any() else 0.0
    masks: dict[str, np.ndarray] = {
        "activity=cold": cold,
        "activity=light": ~cold & (hist <= median),
        "activity=heavy": ~cold & (hist > median),
        "history=some": ~cold,
        "history=none": cold,
    }
    for c, name in enumerate(POPULARITY_CLASSES):
        masks[f"popularity={name}"] = np.asarray(inputs.has_class[:, c], dtype=bool)
    masks["new_items=yes"] = np.asarray(inputs.has_new_item, dtype=bool)
    masks["new_items=no"] = ~masks["new_items=yes"]
    since = np.asarray(inputs.since_last, dtype=np.float64)
    for name, lo, hi in RECENCY_BINS:
        masks[f"recency={name}"] = ~np.isnan(since) & (since >= lo) & (since < hi)
    masks["recency=none"] = np.isnan(since)
    for name, mask in masks.items():
        assert mask.shape == (n,), name
    definitions = {
        "activity": {"history": "train+valid interactions", "light_max_history": median,
                     "rule": "cold: 0; light: 1..median; heavy: > median (median over warm evaluated users)"},
        "popularity": {"head_share": HEAD_SHARE, "tail_share": TAIL_SHARE, "membership": "any relevant test item",
                       "rule": "items by train count; head carries the first 20% of volume, tail the last 20% "
                               "and items absent from train"},
        "new_items": {"rule": "yes: some relevant test item has no train interaction"},
        "recency": {"bins_days": [[lo / DAY, None if hi == np.inf else hi / DAY] for _, lo, hi in RECENCY_BINS],
                    "rule": "time from the last history interaction to the test window start; none: no history"},
    }
    return masks, definitions
