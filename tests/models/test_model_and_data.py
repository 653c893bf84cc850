"""History building (models/data.py) and the two-tower model's shapes and edge cases."""

import numpy as np
import torch

from models.config import TrainConfig
from models.data import Interactions, NextItemSamples, UserSequences, ranges_pairs
from models.families import FAMILIES, get_family


def interactions(rows):
    user, item, ts = (np.array(c, dtype=np.int64) for c in zip(*rows))
    return Interactions(user, item, ts)


# File order is chronological: the users' interactions interleave.
ROWS = [(0, 1, 10), (1, 4, 11), (0, 2, 12), (0, 3, 13), (1, 5, 14)]


def test_next_item_samples_are_right_aligned_and_left_padded():
    samples = NextItemSamples(interactions(ROWS), n_users=3, history_len=2)
    assert len(samples) == 5
    history, target = samples.batch(np.arange(5))
    # Grouped by user, time order kept; the first interaction of each user has an empty history.
    assert target.tolist() == [1, 2, 3, 4, 5]
    assert history.tolist() == [[0, 0], [0, 1], [1, 2], [0, 0], [0, 4]]
    assert history.dtype == torch.int64


def test_user_histories_and_pairs():
    seq = UserSequences(interactions(ROWS), n_users=3)
    users = np.array([0, 1, 2])  # user 2 has no interactions
    assert seq.user_histories(users, 4).tolist() == [[0, 1, 2, 3], [0, 0, 4, 5], [0, 0, 0, 0]]
    rows, items = seq.user_item_pairs(users)
    assert rows.tolist() == [0, 0, 0, 1, 1] and items.tolist() == [1, 2, 3, 4, 5]


def test_ranges_pairs_handles_empty_ranges():
    rows, values = ranges_pairs(np.array([0, 2, 2]), np.array([2, 2, 3]), np.array([7, 8, 9]))
    assert rows.tolist() == [0, 0, 2] and values.tolist() == [7, 8, 9]


def make_model(n_items=30):
    config = TrainConfig(embedding_dim=8, hidden_dim=16, history_len=5)
    return get_family(config.model).from_config(config, n_items)


def test_registry():
    assert "two_tower" in FAMILIES


def test_two_tower_shapes():
    model = make_model()
    history = torch.randint(0, 31, (4, 5))
    assert model(history).shape == (4, 30)
    assert model.user_vectors(history).shape == (4, 8)
    assert model.item_vectors().shape == (30, 8)


def test_empty_history_is_finite_and_learnable():
    model = make_model()
    empty = torch.zeros(2, 5, dtype=torch.int64)
    scores = model(empty)
    assert torch.isfinite(scores).all()
    scores.sum().backward()
    assert model.empty_history.grad is not None and model.empty_history.grad.abs().sum() > 0


def test_padding_is_ignored():
    model = make_model()
    # The same items with more padding give the same user vector (masked mean, zero padding row).
    a = model.user_vectors(torch.tensor([[0, 0, 0, 3, 7]]))
    b = model.user_vectors(torch.tensor([[0, 3, 0, 0, 7]]))
    torch.testing.assert_close(a, b)
    # Padding never receives gradient.
    model(torch.tensor([[0, 0, 1, 2, 3]])).sum().backward()
    assert model.item_embedding.weight.grad[0].abs().sum() == 0
