"""models/metrics.py against values computed by hand."""

import math

import numpy as np
import pytest

from models.metrics import (
    hit_rate_at_k,
    metric_names_multi,
    metrics_from_ranked,
    mrr,
    ndcg_at_k,
    per_user_metrics,
    ranked_relevance,
    recall_at_k,
)

INF = np.inf
L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def test_ranked_relevance_sorts_by_score_and_breaks_ties_by_column():
    scores = np.array([[0.1, 0.9, 0.5, 0.3, 0.7], [0.5, 0.5, -INF, 0.2, 0.1]])
    relevant = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=bool)
    # Row 0 ranks columns 1, 4, 2, 3, 0. Row 1 ranks 0, 1 (tie: lower column first), 3, 4, then the excluded 2.
    expected = np.array([[0, 0, 1, 0, 1], [0, 1, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(ranked_relevance(scores, relevant), expected)


def test_metrics_by_hand():
    ranked = np.array(
        [
            [0, 0, 1, 0, 1],  # 2 relevant, first at rank 3
            [0, 1, 0, 0, 0],  # 1 relevant at rank 2
            [0, 0, 0, 1, 0],  # 1 relevant at rank 4: outside the top 3, but counts for MRR
            [1, 0, 1, 1, 1],  # 4 relevant (more than k)
        ],
        dtype=bool,
    )
    k = 3
    np.testing.assert_allclose(recall_at_k(ranked, k), [1 / 2, 1, 0, 2 / 4])
    np.testing.assert_allclose(hit_rate_at_k(ranked, k), [1, 1, 0, 1])
    np.testing.assert_allclose(
        ndcg_at_k(ranked, k),
        [
            (1 / L4) / (1 / L2 + 1 / L3),  # IDCG over min(2, 3) = 2 hits
            (1 / L3) / (1 / L2),
            0.0,
            (1 / L2 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4),  # IDCG over min(4, 3) = 3 hits
        ],
    )
    np.testing.assert_allclose(mrr(ranked), [1 / 3, 1 / 2, 1 / 4, 1])


def test_perfect_and_empty_rankings():
    perfect = np.array([[1, 1, 0, 0]], dtype=bool)
    assert ndcg_at_k(perfect, 2)[0] == pytest.approx(1.0)
    assert recall_at_k(perfect, 2)[0] == 1.0
    nothing = np.zeros((1, 4), dtype=bool)
    for metric in (recall_at_k(nothing, 2), hit_rate_at_k(nothing, 2), ndcg_at_k(nothing, 2), mrr(nothing)):
        assert metric[0] == 0.0


def test_k_larger_than_the_item_count():
    ranked = np.array([[0, 1]], dtype=bool)
    assert ndcg_at_k(ranked, 10)[0] == pytest.approx((1 / L3) / (1 / L2))
    assert recall_at_k(ranked, 10)[0] == 1.0


def test_per_user_metrics_from_scores():
    scores = np.array([[0.4, 0.3, 0.2, -INF, 0.1]])
    relevant = np.array([[0, 0, 0, 0, 1]], dtype=bool)
    got = per_user_metrics(scores, relevant, k=3)
    assert list(got) == ["recall@3", "ndcg@3", "hr@3", "mrr"]
    assert [float(v[0]) for v in got.values()] == [0.0, 0.0, 0.0, 0.25]


def test_metrics_at_several_cutoffs_agree_with_one_cutoff_at_a_time():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 30))
    scores[rng.random((40, 30)) < 0.2] = -INF
    relevant = (rng.random((40, 30)) < 0.1) & np.isfinite(scores)
    several = metrics_from_ranked(ranked_relevance(scores, relevant), [5, 20])
    assert list(several) == metric_names_multi([5, 20]) == [
        "recall@5", "ndcg@5", "hr@5", "recall@20", "ndcg@20", "hr@20", "mrr"]
    for k in (5, 20):
        for name, values in per_user_metrics(scores, relevant, k).items():
            np.testing.assert_array_equal(several[name], values)
