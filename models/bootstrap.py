"""Percentile bootstrap confidence intervals for per-user metric means, and paired intervals for differences.

Why: a promotion gate that compares point estimates promotes noise. Users are the resampling unit (their metrics are
independent; a user's several test items are not). One resample matrix serves every metric and every ranker of a
population, so model, baseline and their difference are resampled *together* (paired): the interval of a difference
is the interval of the per-resample difference of means, never a combination of two marginal intervals.

Vectorised: a resample is a row of multiplicity counts (how often each user is drawn), and every resampled mean is
one matrix product `counts @ values / n`; 1000 resamples of 6,000 users x 30 columns take milliseconds.

    from models.bootstrap import Bootstrap
    boot = Bootstrap(n_users, n_resamples=1000, seed=0)
    boot.interval(values)            # {"point", "lo", "hi"} of mean(values)
    boot.difference(a, b)            # paired: mean(a) - mean(b), and the relative a/b - 1 where mean(b) > 0
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONFIDENCE = 0.95
COUNTS_CELLS_PER_CHUNK = 2**22  # bounds the (resamples, users) draw/count matrices at ~32 MB each


class Bootstrap:
    """Fixed resamples of `n` users: `n_resamples` draws of n users with replacement from `seed`."""

    def __init__(self, n: int, n_resamples: int = 1000, seed: int = 0, confidence: float = CONFIDENCE):
        if n < 1:
            raise ValueError(f"bootstrap needs at least one user, got {n}")
        if n_resamples < 1:
            raise ValueError(f"bootstrap needs at least one resample, got {n_resamples}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        self.n, self.n_resamples, self.confidence = n, n_resamples, confidence
        self.seed = seed
        self._quantiles = (100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2)

    def means(self, values: np.ndarray) -> np.ndarray:
        """Resampled means of each column: values (n,) or (n, c) -> (n_resamples,) or (n_resamples, c).
        The same seed gives the same resamples for every call, which is what makes separate calls paired."""
        values = np.asarray(values, dtype=np.float64)
        flat = values.reshape(self.n, -1)
        rng = np.random.default_rng(self.seed)
        rows = max(1, COUNTS_CELLS_PER_CHUNK // self.n)
        out = []
        for lo in range(0, self.n_resamples, rows):
            b = min(rows, self.n_resamples - lo)
            draws = rng.integers(0, self.n, size=(b, self.n))
            counts = np.bincount((draws + self.n * np.arange(b)[:, None]).ravel(), minlength=b * self.n)
            out.append(counts.reshape(b, self.n).astype(np.float64) @ flat / self.n)
        res = np.concatenate(out)
        return res.reshape((self.n_resamples,) + values.shape[1:])

    def _bounds(self, resampled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.percentile(resampled, self._quantiles, axis=0)
        return lo, hi

    def intervals(self, values: np.ndarray) -> list[dict[str, float]]:
        """One {"point", "lo", "hi"} per column of values (n, c)."""
        values = np.asarray(values, dtype=np.float64).reshape(self.n, -1)
        lo, hi = self._bounds(self.means(values))
        return [{"point": float(p), "lo": float(a), "hi": float(b)} for p, a, b in zip(values.mean(axis=0), lo, hi)]

    def interval(self, values: np.ndarray) -> dict[str, float]:
        return self.intervals(np.asarray(values).reshape(self.n, 1))[0]

    def differences(self, a: np.ndarray, b: np.ndarray) -> list[dict[str, Any]]:
        """Paired differences mean(a) - mean(b) per column of a, b (n, c), each with its interval, and the relative
        difference mean(a)/mean(b) - 1: `rel_point` when mean(b) > 0, `rel_lo`/`rel_hi` only when mean(b) > 0 in
        every resample (else None: the ratio is undefined on some resamples)."""
        a = np.asarray(a, dtype=np.float64).reshape(self.n, -1)
        b = np.asarray(b, dtype=np.float64).reshape(self.n, -1)
        c = a.shape[1]
        both = self.means(np.concatenate([b, a - b], axis=1))  # one resample pass for both
        mb, md = both[:, :c], both[:, c:]
        d_lo, d_hi = self._bounds(md)
        pb, pd = b.mean(axis=0), (a - b).mean(axis=0)
        out = []
        for j in range(c):
            item: dict[str, Any] = {"point": float(pd[j]), "lo": float(d_lo[j]),
                                    "hi": float(d_hi[j]), "rel_point": None, "rel_lo": None, "rel_hi": None}
            if pb[j] > 0:
                item["rel_point"] = float(pd[j] / pb[j])
            if np.all(mb[:, j] > 0):
                # (ma - mb) / mb written as md / mb: exactly 0 when a and b are the same ranker.
                r_lo, r_hi = self._bounds(md[:, j] / mb[:, j])
                item["rel_lo"], item["rel_hi"] = float(r_lo), float(r_hi)
            out.append(item)
        return out

    def difference(self, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
        return self.differences(np.asarray(a).reshape(self.n, 1), np.asarray(b).reshape(self.n, 1))[0]
