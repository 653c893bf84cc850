"""models/continuous_time.py: the ODE solvers, masking, time handling, config validation, and the ode_rnn / gru
families through train -> evaluate -> export (time inputs, parity) -> quantize."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_CONFIG, python_job
from models.masking import mask_history
from models.config import ConfigError, TrainConfig
from models.continuous_time import Gru, OdeRnn, integrate, user_scores
from models.data import Interactions, NextItemSamples, UserSequences
from models.export import example_inputs
from models.model_file import load_model

DAY_MS = 86_400_000
T0 = 1_600_000_000_000  # an epoch-ms origin


def decay(h: torch.Tensor) -> torch.Tensor:
    return -h


# ---- solvers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 8])
def test_rk4_solves_exponential_decay(steps):
    h0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    dt = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    got = integrate(decay, h0, dt, "rk4", steps)
    exact = h0 * torch.exp(-dt)
    # RK4's global error is O(step^4): one step of 1.0 is off by ~0.007 per unit of h, 8 steps by ~1e-7.
    tolerance = {1: 0.03, 2: 2e-3, 8: 1e-5}[steps]
    assert torch.allclose(got, exact, rtol=0, atol=tolerance), (got, exact)


def test_euler_converges_at_first_order_as_steps_grow():
    h0, dt = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    exact = math.exp(-1.0)
    errors = [abs(float(integrate(decay, h0, dt, "euler", n)) - exact) for n in (1, 2, 4, 8, 16, 32)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.01
    ratios = [a / b for a, b in zip(errors[1:], errors[2:])]
    assert all(1.9 < r < 2.4 for r in ratios) and 1.95 < ratios[-1] < 2.05, ratios  # halving the step halves the error
    # RK4 with as many evaluations of f (8 = 2 steps x 4) as Euler with 8 steps is far closer.
    assert abs(float(integrate(decay, h0, dt, "rk4", 2)) - exact) < errors[3] / 50


def test_a_zero_gap_leaves_the_state_unchanged_and_bad_solvers_are_refused():
    h0 = torch.randn(3, 4)
    assert torch.equal(integrate(decay, h0, torch.zeros(3, 1), "rk4", 3), h0)
    with pytest.raises(ValueError, match="unknown ODE solver 'midpoint'"):
        integrate(decay, h0, torch.ones(3, 1), "midpoint", 1)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        integrate(decay, h0, torch.ones(3, 1), "euler", 0)


# ---- the model --------------------------------------------------------------------------------------------------


def models(history_len: int = 5) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    out = [Gru(30, 8, 12, history_len, dropout=0.0),
           OdeRnn(30, 8, 12, history_len, dropout=0.0, ode_solver="rk4", ode_steps=2),
           OdeRnn(30, 8, 12, history_len, dropout=0.0, ode_solver="euler", ode_steps=3)]
    for m in out:
        with torch.no_grad():  # a drift strong enough that time visibly matters
            if isinstance(m, OdeRnn):
                m.drift.inner.bias[12:].fill_(-2.0)
                m.drift.outer.weight.mul_(5.0)
    return [m.eval() for m in out]


def vectors(model: torch.nn.Module, history: list[list[int]], ts: list[list[int]], query: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.user_vectors(torch.tensor(history), torch.tensor(ts), torch.tensor(query))


@pytest.mark.parametrize("model", models(), ids=lambda m: f"{m.family}-{getattr(m, 'solver', '')}")
def test_padding_leaves_the_state_unchanged_wherever_it_sits(model):
    a, b, c = 3, 17, 9
    ta, tb, tc, q = T0, T0 + 2 * DAY_MS, T0 + 40 * DAY_MS, T0 + 41 * DAY_MS
    reference = vectors(model, [[0, 0, a, b, c]], [[0, 0, ta, tb, tc]], [q])
    # Padding in the middle, with garbage timestamps at the padding positions: same state.
    same = vectors(model, [[a, 0, b, 0, c], [0, a, b, c, 0]], [[ta, 123, tb, T0 + 99 * DAY_MS, tc], [5, ta, tb, tc, 7]],
                   [q, q])
    torch.testing.assert_close(same, reference.expand(2, -1), rtol=0, atol=1e-6)
    # A shorter model input (history_len 3) of the same events: same state (nothing depends on the position).
    torch.testing.assert_close(vectors(model, [[a, b, c]], [[ta, tb, tc]], [q]), reference, rtol=0, atol=1e-6)
    # The empty history stays at the initial state, whatever the query time.
    empty = vectors(model, [[0] * 5, [0] * 5], [[0] * 5, [1] * 5], [q, T0 + 900 * DAY_MS])
    torch.testing.assert_close(empty[0], empty[1])
    torch.testing.assert_close(empty[0], model.project(model.initial_state).detach())


@pytest.mark.parametrize("model", models(), ids=lambda m: f"{m.family}-{getattr(m, 'solver', '')}")
def test_only_the_ode_family_reads_time(model):
    history = [[0, 4, 8, 15]] * 3
    base = [0, T0, T0 + DAY_MS, T0 + 2 * DAY_MS]
    stretched = [0, T0, T0 + 60 * DAY_MS, T0 + 61 * DAY_MS]
    out = vectors(model, history, [base, stretched, base], [T0 + 3 * DAY_MS, T0 + 62 * DAY_MS, T0 + 90 * DAY_MS])
    if model.family == "gru":  # (rows of one batch may differ in the last bits: tolerance, not equality)
        torch.testing.assert_close(out[1], out[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(out[2], out[0], rtol=0, atol=1e-6)
    else:
        assert (out[1] - out[0]).abs().max() > 1e-3  # the gaps between events matter
        assert (out[2] - out[0]).abs().max() > 1e-3  # and so does the gap to the query
    # A query before the last event (clock skew, noise) counts as no gap.
    at_last = vectors(model, history[:1], [base], [base[-1]])
    before = vectors(model, history[:1], [base], [base[-1] - 5 * DAY_MS])
    torch.testing.assert_close(before, at_last, rtol=0, atol=0)


@pytest.mark.parametrize(("solver", "steps", "bound"), [("euler", 10, 1.0), ("rk4", 10, 1.05)])
def test_the_state_stays_bounded_over_huge_gaps_at_stable_step_sizes(solver, steps, bound):
    # Gaps of up to 55 years: dt = log1p(20000) ~ 9.9 with the one-day scale. An Euler step of dt/steps <= 1 at a
    # drift rate < 1 is a convex combination of h and g(h) in [-1, 1]: h stays in the box exactly. RK4 is not a
    # convex combination but stays close at steps of ~1. (Coarser steps on this stiff drift overshoot: RK4 at ~2.5
    # reaches |h| ~ 3; the solver table in bench/ode-solvers.ts measures what that costs on real data.)
    model = OdeRnn(30, 8, 12, 5, dropout=0.0, ode_solver=solver, ode_steps=steps).eval()
    with torch.no_grad():
        model.drift.inner.bias[12:].fill_(-6.0)  # rate ~1: the fastest drift the gate allows
        model.drift.outer.weight.mul_(5.0)
    model.project = torch.nn.Identity()  # read h itself
    ts = torch.tensor([[T0, T0 + 3000 * DAY_MS, T0 + 6000 * DAY_MS, T0 + 6001 * DAY_MS, T0 + 9000 * DAY_MS]])
    with torch.no_grad():
        for query in (T0 + 9000 * DAY_MS, T0 + 20000 * DAY_MS):
            h = model.user_vectors(torch.tensor([[1, 2, 3, 4, 5]]), ts, torch.tensor([query]))
            assert torch.isfinite(h).all() and h.abs().max() <= bound + 1e-6, h


def test_scores_are_user_vectors_times_item_vectors():
    for model in models():
        feed = example_inputs(model, batch=6)
        args = [torch.from_numpy(v) for v in feed.values()]
        with torch.no_grad():
            torch.testing.assert_close(model(*args), model.user_vectors(*args) @ model.item_vectors().T)


# ---- data and config --------------------------------------------------------------------------------------------


def test_samples_carry_millisecond_timestamps_and_the_targets_time():
    data = Interactions(user=np.array([0, 0, 1, 0]), item=np.array([5, 6, 7, 8]), ts=np.array([10, 20, 25, 30]))
    samples = NextItemSamples(data, n_users=2, history_len=2)
    history, ts, query, target = (t.numpy() for t in samples.batch_with_time(np.arange(4)))
    assert history.tolist() == [[0, 0], [0, 5], [5, 6], [0, 0]]
    assert ts.tolist() == [[0, 0], [0, 10_000], [10_000, 20_000], [0, 0]]
    assert query.tolist() == [10_000, 20_000, 30_000, 25_000] and target.tolist() == [5, 6, 8, 7]
    assert ts.dtype == np.int64 and query.dtype == np.int64
    seqs = UserSequences(data, n_users=3)
    assert seqs.user_history_times_ms(np.array([0, 2]), 2).tolist() == [[20_000, 30_000], [0, 0]]


def test_config_keys_are_validated():
    config = TrainConfig.from_dict({"model": "ode_rnn", "ode_solver": "rk4", "ode_steps": 3, "time_scale_seconds": 60})
    assert config.time_scale_seconds == 60.0 and isinstance(config.time_scale_seconds, float)
    model = OdeRnn.from_config(config, 10)
    assert (model.solver, model.steps, model.time_scale_ms) == ("rk4", 3, 60_000.0)
    assert TrainConfig.from_dict({"model": "gru"}).model == "gru"
    for values, message in [
        ({"ode_solver": "midpoint"}, "'ode_solver' must be 'euler' or 'rk4'"),
        ({"ode_solver": 4}, "'ode_solver' expects str"),
        ({"ode_steps": 0}, "'ode_steps' must be >= 1"),
        ({"ode_steps": 1.5}, "'ode_steps' expects int"),
        ({"time_scale_seconds": 0}, "'time_scale_seconds' must be finite and > 0"),
        ({"time_scale_seconds": -5.0}, "'time_scale_seconds' must be finite and > 0"),
        ({"time_scale_seconds": float("inf")}, "'time_scale_seconds' must be finite and > 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict(values)


# ---- through the pipeline's steps -------------------------------------------------------------------------------

# Small enough for a busy 2-core machine: the graph unrolls history_len x ode_steps x 4 (rk4) drift evaluations.
SMALL = {**TINY_CONFIG, "epochs": 1, "history_len": 4}


@pytest.fixture(scope="module", params=[("ode_rnn", {"ode_solver": "rk4", "ode_steps": 1}), ("gru", {})],
                ids=["ode_rnn", "gru"])
def trained_family(request, dataset, tmp_path_factory):
    family, extra = request.param
    out = tmp_path_factory.mktemp(family)
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(out),
                     "--config-json", json.dumps({**SMALL, "model": family, **extra}))
    assert run.returncode == 0, run.stderr
    assert run.last["config"]["model"] == family and math.isfinite(run.last["final_loss"])
    return family, out


@pytest.fixture(scope="module")
def exported_family(trained_family):
    family, out = trained_family
    path = out / "model.onnx"
    run = python_job("models.export", "--model", str(out / "model.pt"), "--out", str(path), "--top-k", "10",
                     timeout=300)
    assert run.returncode == 0, run.stderr
    return family, out, path, run.last


def test_evaluate_feeds_the_time_inputs(trained_family, dataset):
    family, out = trained_family
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"), "--out",
                     str(out / "eval.json"), "--bootstrap", "50")
    assert run.returncode == 0, run.stderr
    assert run.last["n_users"] > 0 and 0 <= run.last["metrics"]["model"]["ndcg@10"] <= 1
    report = json.loads((out / "eval.json").read_text())
    assert report["model"]["family"] == family


def test_export_takes_timestamps_and_matches_pytorch(exported_family):
    family, out, path, result = exported_family
    assert result["topk_match"] is True and result["max_abs_diff"] <= result["tolerance"]
    assert result["inputs"] == [
        {"name": "history", "dtype": "int64", "shape": ["batch", 4]},
        {"name": "timestamps", "dtype": "int64", "shape": ["batch", 4]},
        {"name": "query_time", "dtype": "int64", "shape": ["batch"]},
    ]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["recsys.inputs"] == "history,timestamps,query_time" and props["recsys.family"] == family

    model, _ = load_model(str(out / "model.pt"))
    feed = example_inputs(model, batch=16, seed=3)
    # Gaps above 2^31 ms (~25 days) and a query before the last event are in the parity set.
    gaps = np.diff(np.where(feed["timestamps"] > 0, feed["timestamps"], np.nan), axis=1)
    assert np.nanmax(gaps) > 2**32
    scores, items = ort.InferenceSession(str(path)).run(["scores", "items"], feed)
    with torch.no_grad():
        tensors = [torch.from_numpy(v) for v in feed.values()]
        expected = mask_history(model(*tensors), tensors[0]).numpy()  # the graph masks the history window
    np.testing.assert_allclose(scores, np.sort(expected, axis=1)[:, ::-1][:, :10], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(expected, items - 1, axis=1), scores, atol=1e-5)


def test_quantize_feeds_the_time_inputs(exported_family, dataset):
    family, out, path, _ = exported_family
    run = python_job("models.quantize", "--onnx", str(path), "--out", str(out / "model.int8.onnx"), "--data-dir",
                     str(dataset), "--runs", "30", "--warmup", "3", timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.last["n_users"] > 0 and run.last["ships"] in ("float", "int8")
    assert 0 < run.last["float"]["ndcg@10"] <= 1


def test_user_scores_use_the_query_time(trained_family, dataset):
    family, out = trained_family
    model, _ = load_model(str(out / "model.pt"))
    data = Interactions(user=np.array([0, 0, 0]), item=np.array([1, 2, 3]), ts=np.array([100, 200, 86_400 * 30]))
    seqs = UserSequences(data, n_users=1)
    with torch.no_grad():
        soon = user_scores(model, seqs, np.array([0]), np.array([86_400_000 * 30 + 1000]))
        later = user_scores(model, seqs, np.array([0]), np.array([86_400_000 * 400]))
    if family == "gru":
        torch.testing.assert_close(soon, later, rtol=0, atol=1e-6)
    else:
        assert (soon - later).abs().max() > 1e-4
