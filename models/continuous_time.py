"""Continuous-time sequential families: `ode_rnn` (ODE-RNN, Rubanova et al. 2019, with GRU-ODE-Bayes' gated
dynamics, De Brouwer et al. 2019) and its discrete baseline `gru` (the same network without the ODE).

state:   h in R^hidden_dim, a learned initial state h0 for every user
events:  the history, left-padded with 0, most recent last, with its epoch-millisecond timestamps (0 at padding).
         For each real event in order: h evolves by the ODE over the scaled gap since the previous event (none before
         the first), then jumps: h = GRUCell(dropout(item embedding), h). Padding positions leave h unchanged (and do
         not move the "previous event" time), wherever they sit.
query:   after the last event h evolves again, to `query_time` (the request's time; at training, the target's time).
         An empty history has no anchor time: it stays at h0.
ODE:     dh/dt = f(h) = (1 - z(h)) * (g(h) - h),  g(h) = tanh(W2 tanh(W1 h + b1) + b2),  z(h) = sigmoid(Wz h + bz)
         a small tanh MLP g is the state the user drifts toward, z a learned gate on the drift rate (GRU-ODE's form
         without the reset gate). Why gated and not a bare MLP: the exact flow keeps h in [-1, 1] like a GRU state
         (it moves toward g in (-1, 1) at a rate < 1), so no gap can blow the state up, and the gate lets the model
         keep what a long gap should not erase. bz starts at +2 (rate ~0.12): at initialisation time barely moves
         the state. The fixed-step solvers keep that only for small steps: an Euler step dt/ode_steps <= 1 is a
         convex combination of h and g (h stays in the box exactly), up to 2 it stays bounded, beyond it can
         diverge; RK4 is accurate for larger steps but overshoots too when the drift is stiff. Hence ode_steps.
time:    dt = log1p(gap_seconds / time_scale_seconds). log1p compresses large gaps: ML-100K spans 7 months; with a
         one-day scale a minute's gap is dt ~ 0.0007, a day 0.69, a month 3.4, 7 months 5.4. Gaps are differences of
         int64 milliseconds taken before the cast to float (epoch ms in float32 would lose ~2 minutes of precision);
         negative gaps (out-of-order or noisy timestamps) count as 0.
solver:  `euler` or `rk4`, `ode_steps` equal steps over each gap, unrolled: the ONNX graph is fixed (no Loop, no
         data-dependent control flow). Cost per event: ode_steps (euler) or 4 * ode_steps (rk4) evaluations of f.
output:  user vector = Linear(h) (hidden_dim -> embedding_dim); item vectors = the input item embeddings (shared,
         as in SASRec), so forward = user_vectors @ item_vectors().T: models/families.py's contract with the two
         time inputs added (`uses_time = True`).
`gru`:   the same embedding, GRUCell, h0, projection and masking, no ODE: timestamps and query_time are accepted and
         ignored, so serving, export and evaluation treat both families alike (same three graph inputs) and the
         comparison isolates the ODE. It reads `ode_*` and `time_scale_seconds` from the config and ignores them.

Train with the generic loop (models/train.py passes timestamps to `uses_time` families), e.g.
    OMP_NUM_THREADS=1 python -m models.train --data-dir D --out-dir O \
        --config-json '{"model": "ode_rnn", "ode_solver": "rk4", "ode_steps": 2, "history_len": 20}'
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

SOLVERS = ("euler", "rk4")
MS_PER_SECOND = 1000.0


def integrate(f: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, dt: torch.Tensor, solver: str,
              steps: int) -> torch.Tensor:
    """h(t0 + dt) for dh/dt = f(h) from h(t0) = h, by `steps` fixed steps of size dt / steps (unrolled).
    h: (B, H); dt: (B, 1), per row (0 leaves the row unchanged)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r} (known: {', '.join(SOLVERS)})")
    if steps < 1:
        raise ValueError(f"ODE steps must be >= 1, got {steps}")
    step = dt / steps
    for _ in range(steps):
        if solver == "euler":
            h = h + step * f(h)
        else:
            k1 = f(h)
            k2 = f(h + 0.5 * step * k1)
            k3 = f(h + 0.5 * step * k2)
            k4 = f(h + step * k3)
            h = h + step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return h


class Affine(nn.Module):
    """y = x @ weight + bias, weight stored (in, out): it exports as MatMul + Add, where nn.Linear exports as Gemm
    with transB=1. The graph unrolls the recurrence, so one weight feeds many nodes, and onnxruntime's dynamic
    quantizer (models/quantize.py) rewrites every Gemm to MatMul by transposing its weight initializer in place, once
    per node: a shared weight ends up transposed back and forth, and quantization fails. Initialised as nn.Linear."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        bound = n_in**-0.5
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class GruJump(nn.Module):
    """torch.nn.GRUCell's update (gates r, z, candidate n; h' = (1 - z) * n + z * h) with the input's part computed
    apart, for every position at once (one MatMul over the whole history instead of one per position)."""

    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.input = Affine(n_in, 3 * hidden)
        self.hidden = Affine(hidden, 3 * hidden)
        with torch.no_grad():  # GRUCell's initialisation: U(-1/sqrt(hidden), 1/sqrt(hidden)) everywhere
            for p in self.parameters():
                p.uniform_(-(hidden**-0.5), hidden**-0.5)

    def forward(self, x_part: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x_part: self.input(x) at one position, (B, 3H); h: (B, H)."""
        xr, xz, xn = x_part.chunk(3, dim=-1)
        hr, hz, hn = self.hidden(h).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1.0 - z) * n + z * h


class GatedDrift(nn.Module):
    """f(h) = (1 - sigmoid(Wz h + bz)) * (tanh(W2 tanh(W1 h + b1) + b2) - h); W1 and Wz share one MatMul."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.inner = Affine(dim, 2 * dim)  # [W1, Wz]
        self.outer = Affine(dim, dim)  # W2
        with torch.no_grad():
            self.inner.bias[dim:].fill_(2.0)  # z ~ 0.88 at start: slow drift

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, z = self.inner(h).split(self.dim, dim=-1)
        return (1.0 - torch.sigmoid(z)) * (torch.tanh(self.outer(torch.tanh(a))) - h)


class _Recurrent(nn.Module):
    """Shared by both families: embeddings, the GRU jump, masking, the projection. `evolve` is the only difference."""

    family = ""
    uses_time = True

    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, history_len: int, dropout: float = 0.2):
        super().__init__()
        self.n_items = n_items
        self.history_len = history_len
        self.item_embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.input_dropout = nn.Dropout(dropout)
        self.cell = GruJump(embedding_dim, hidden_dim)
        self.initial_state = nn.Parameter(torch.zeros(hidden_dim))
        self.project = nn.Linear(hidden_dim, embedding_dim)

    def evolve(self, h: torch.Tensor, gap_ms: torch.Tensor) -> torch.Tensor:
        """The state after `gap_ms` (float32 (B,), >= 0) without events. The discrete GRU: unchanged."""
        return h

    @staticmethod
    def gap_ms(later: torch.Tensor, earlier: torch.Tensor, started: torch.Tensor) -> torch.Tensor:
        """later - earlier as float32 ms, negative gaps as 0, 0 where not `started`. The difference is taken in int64
        (exact), the clamp in float: onnxruntime 1.31's int64 Clip returns 0 for some values above 2^31 (e.g. 3e9 ms,
        ~35 days), which export's parity check caught."""
        return torch.where(started, (later - earlier).to(torch.float32).clamp(min=0.0), 0.0)

    def user_vectors(self, history: torch.Tensor, timestamps: torch.Tensor, query_time: torch.Tensor) -> torch.Tensor:
        """history, timestamps: int64 (batch, history_len), 0 = padding, most recent last (timestamps in epoch ms);
        query_time: int64 (batch,), epoch ms. Returns (batch, embedding_dim)."""
        real = history > 0
        x = self.cell.input(self.input_dropout(self.item_embedding(history)))  # (B, L, 3H)
        h = self.initial_state.unsqueeze(0).expand(history.shape[0], -1)
        last = torch.zeros_like(query_time)  # time of the latest real event so far
        started = torch.zeros_like(real[:, 0])  # whether there was one
        for i in range(history.shape[1]):
            is_real = real[:, i]
            jumped = self.cell(x[:, i], self.evolve(h, self.gap_ms(timestamps[:, i], last, started)))
            h = torch.where(is_real.unsqueeze(1), jumped, h)
            last = torch.where(is_real, timestamps[:, i], last)
            started = started | is_real
        h = self.evolve(h, self.gap_ms(query_time, last, started))
        return self.project(h)

    def item_vectors(self) -> torch.Tensor:
        """Vectors of the real items 1..n_items, shape (n_items, d): row j is item j + 1."""
        return self.item_embedding.weight[1:]

    def forward(self, history: torch.Tensor, timestamps: torch.Tensor, query_time: torch.Tensor) -> torch.Tensor:
        """Scores of all real items, (batch, n_items); column j is item j + 1."""
        return self.user_vectors(history, timestamps, query_time) @ self.item_vectors().T


class Gru(_Recurrent):
    """The discrete baseline: GRU over the history's items, time ignored."""

    family = "gru"

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "Gru":
        return cls(n_items, config.embedding_dim, config.hidden_dim, config.history_len, config.dropout)


class OdeRnn(_Recurrent):
    """ODE-RNN: the GRU's state also evolves over real time between events and up to the query time."""

    family = "ode_rnn"

    def __init__(self, n_items: int, embedding_dim: int, hidden_dim: int, history_len: int, dropout: float = 0.2,
                 ode_solver: str = "euler", ode_steps: int = 4, time_scale_seconds: float = 86400.0):
        super().__init__(n_items, embedding_dim, hidden_dim, history_len, dropout)
        if ode_solver not in SOLVERS:
            raise ValueError(f"unknown ODE solver {ode_solver!r} (known: {', '.join(SOLVERS)})")
        if ode_steps < 1 or not (time_scale_seconds > 0 and math.isfinite(time_scale_seconds)):
            raise ValueError(f"need ode_steps >= 1 and time_scale_seconds > 0, got {ode_steps}, {time_scale_seconds}")
        self.solver = ode_solver
        self.steps = ode_steps
        self.time_scale_ms = time_scale_seconds * MS_PER_SECOND
        self.drift = GatedDrift(hidden_dim)

    @classmethod
    def from_config(cls, config: Any, n_items: int) -> "OdeRnn":
        return cls(n_items, config.embedding_dim, config.hidden_dim, config.history_len, config.dropout,
                   config.ode_solver, config.ode_steps, config.time_scale_seconds)

    def scaled_time(self, gap_ms: torch.Tensor) -> torch.Tensor:
        """float32 (B,) milliseconds -> (B, 1) ODE time: log1p(gap / time scale)."""
        return torch.log1p(gap_ms / self.time_scale_ms).unsqueeze(1)

    def evolve(self, h: torch.Tensor, gap_ms: torch.Tensor) -> torch.Tensor:
        return integrate(self.drift, h, self.scaled_time(gap_ms), self.solver, self.steps)


def user_scores(model: nn.Module, seqs: Any, users: np.ndarray, query_time_ms: np.ndarray) -> torch.Tensor:
    """forward of any family for `users` at the end of their sequences (`seqs`: a models.data.UserSequences): the
    last history_len items, and for `uses_time` families their epoch-ms timestamps and `query_time_ms` (B,) too."""
    history = torch.from_numpy(seqs.user_histories(users, model.history_len))
    if not getattr(model, "uses_time", False):
        return model(history)
    timestamps = torch.from_numpy(seqs.user_history_times_ms(users, model.history_len))
    return model(history, timestamps, torch.from_numpy(np.asarray(query_time_ms, dtype=np.int64)))
