"""models.quantize: int8 dynamic quantization of the served graph, evaluated and timed against the float graph,
and the gate that decides which one ships."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import python_job, write_dataset
from models.model_file import load_model
from models.export import random_histories
from models.masking import mask_history
from models.quantize import decide, full_ranking_variant, relative_change, speedup_test


# ---- the gate ---------------------------------------------------------------------------------------------------


def paired_timings(float_p50: float, int8_p50: float, runs: int = 1000, load: float = 0.1, jitter: float = 0.03,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic paired runs (ms): a machine-load factor shared by both samples of a pair (lognormal, sd `load`),
    then each graph's own jitter (lognormal, sd `jitter`), with p50s near the given ones."""
    rng = np.random.default_rng(seed)
    shared = np.exp(rng.normal(0, load, runs))
    own = np.exp(rng.normal(0, jitter, (2, runs)))
    return float_p50 * shared * own[0], int8_p50 * shared * own[1]


def test_int8_ships_when_quality_holds_and_it_is_faster():
    f, q = paired_timings(0.30, 0.12)
    ships, reason, change, speed = decide(0.300, 0.2985, f, q, tolerance=0.01)
    assert ships == "int8" and change == pytest.approx(-0.005)
    assert speed.faster and speed.p50_ratio == pytest.approx(0.4, abs=0.02)
    assert speed.lo <= speed.p50_ratio <= speed.hi < 0.9 and speed.min_speedup == 0.10 and speed.runs == 1000
    assert "within tolerance 1% and faster beyond noise: p50 ratio 0.40 [" in reason and "(needs <= 0.90)" in reason
    assert f"p50 {np.median(q):.3f} ms vs {np.median(f):.3f} ms over 1000 paired runs" in reason
    assert decide(0.3, 0.31, f, q, 0.0).ships == "int8"  # better quality passes a zero tolerance


def test_float_ships_when_int8_loses_too_much_ndcg():
    f, q = paired_timings(0.30, 0.12)
    ships, reason, change, speed = decide(0.300, 0.293, f, q, tolerance=0.01)
    assert ships == "float" and change == pytest.approx(-0.07 / 3)
    assert reason.startswith("int8 NDCG@10 -2.33% exceeds tolerance 1%"), reason
    assert speed.faster  # the speed figures are reported whichever check fails


def test_equal_distributions_are_not_faster():
    f, q = paired_timings(0.027, 0.027)
    ships, reason, _, speed = decide(0.3, 0.3, f, q, 0.01)
    assert ships == "float" and not speed.faster
    assert speed.lo < 1 < speed.hi  # the interval covers "no difference"
    assert reason.startswith("int8 not faster beyond noise: p50 ratio 1.0")
    assert decide(0.3, 0.3, f, f, 0.01).ships == "float"  # identical samples: ratio exactly 1
    assert decide(0.3, 0.3, f, f, 0.01).speedup.p50_ratio == 1.0


def test_a_speedup_smaller_than_the_minimum_is_not_faster():
    # 5% faster, and measured precisely: the whole interval is below 1, but not below 0.90.
    f, q = paired_timings(0.30, 0.285, jitter=0.01)
    ships, reason, _, speed = decide(0.3, 0.3, f, q, 0.01)
    assert ships == "float" and speed.p50_ratio == pytest.approx(0.95, abs=0.01)
    assert 0.9 < speed.lo and speed.hi < 1
    assert reason.startswith("int8 not faster beyond noise: p50 ratio 0.95 [") and "(needs <= 0.90)" in reason
    # The same samples pass a 3% minimum, and a 10% speed-up passes only once its interval clears 0.90 (min 5%).
    assert decide(0.3, 0.3, f, q, 0.01, min_speedup=0.03).ships == "int8"
    assert decide(0.3, 0.3, *paired_timings(0.30, 0.27, jitter=0.01), 0.01, min_speedup=0.05).ships == "int8"


def test_noise_that_straddles_the_threshold_is_not_faster():
    # Few runs, no shared load, heavy jitter: the p50s alone say about 19% faster (0.81), but the interval reaches
    # past 0.90 and even past 1 (about [0.59, 1.04]).
    f, q = paired_timings(0.30, 0.255, runs=40, load=0.0, jitter=0.5, seed=8)
    ships, reason, _, speed = decide(0.3, 0.3, f, q, 0.01)
    assert speed.p50_ratio < 0.85 and speed.lo < 0.9 and speed.hi > 1, speed
    assert ships == "float" and not speed.faster and reason.startswith("int8 not faster beyond noise")
    # The same speed-up measured over many runs ships.
    assert decide(0.3, 0.3, *paired_timings(0.30, 0.255, runs=4000, load=0.0, jitter=0.05, seed=3), 0.01).ships \
        == "int8"


def test_pairing_keeps_shared_machine_load_out_of_the_interval():
    # Load swings of +-50% between runs hit both graphs of a pair alike: resampling whole pairs sees a 20% speed-up
    # clearly; resampling the two samples independently (pairs broken) would not.
    f, q = paired_timings(0.30, 0.24, runs=200, load=0.5, jitter=0.02, seed=1)
    paired = speedup_test(f, q, 0.10)
    assert paired.faster and paired.hi - paired.lo < 0.05
    unpaired = speedup_test(f, np.random.default_rng(5).permutation(q), 0.10)
    assert unpaired.hi - unpaired.lo > 2 * (paired.hi - paired.lo)


def test_the_speed_test_is_a_pure_function_of_its_samples():
    f, q = paired_timings(0.30, 0.26, runs=300, seed=4)
    assert speedup_test(f, q, 0.10) == speedup_test(list(f), list(q), 0.10)
    assert speedup_test(f, q, 0.10).describe() == decide(0.3, 0.3, f, q, 0.01).speedup.describe()


def test_the_speed_test_refuses_samples_that_are_not_paired_timings():
    with pytest.raises(ValueError, match="float 3, int8 2"):
        speedup_test([1.0, 1.0, 1.0], [1.0, 1.0], 0.1)
    with pytest.raises(ValueError, match="int8 latency samples must be finite and > 0: sample 1 is 0.0"):
        speedup_test([1.0, 1.0], [1.0, 0.0], 0.1)
    with pytest.raises(ValueError, match="non-empty"):
        speedup_test([], [], 0.1)
    with pytest.raises(ValueError, match="min_speedup"):
        speedup_test([1.0], [1.0], 1.0)


def test_relative_change_of_a_zero_baseline():
    assert relative_change(0.0, 0.0) == 0.0 and relative_change(0.1, 0.0) == math.inf
    assert decide(0.0, 0.0, *paired_timings(0.3, 0.1), 0.01).ships == "int8"


# ---- graphs -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out, _ = trained
    path = tmp_path_factory.mktemp("quantize") / "model.onnx"
    run = python_job("models.export", "--model", str(out / "model.pt"), "--out", str(path), "--top-k", "10")
    assert run.returncode == 0, run.stderr
    return out / "model.pt", path


def test_full_ranking_variant_returns_every_score(exported):
    model_path, path = exported
    model, _ = load_model(str(model_path))
    variant = full_ranking_variant(onnx.load(str(path)), model.n_items)
    history = random_histories(model.n_items, model.history_len, batch=6, seed=2)
    scores, items = ort.InferenceSession(variant.SerializeToString()).run(["scores", "items"], {"history": history})
    assert scores.shape == (6, model.n_items)
    assert (np.sort(items, axis=1) == np.arange(1, model.n_items + 1)).all()  # every item exactly once
    full = np.empty_like(scores)
    full[np.arange(6)[:, None], items - 1] = scores
    with torch.inference_mode():
        expected = mask_history(model(torch.from_numpy(history)), torch.from_numpy(history)).numpy()
        np.testing.assert_allclose(full, expected, atol=1e-5)


@pytest.fixture(scope="module")
def quantized(exported, dataset, tmp_path_factory):
    _, path = exported
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    run = python_job("models.quantize", "--onnx", str(path), "--out", str(out), "--data-dir", str(dataset),
                     "--runs", "200", "--warmup", "20", "--tolerance", "0.05")
    assert run.returncode == 0, run.stderr
    return path, out, run


def test_quantize_result_and_int8_graph(quantized, trained, dataset, tmp_path):
    float_path, int8_path, run = quantized
    result = run.last
    assert result["int8_path"] == str(int8_path) and int8_path.is_file()
    assert result["int8_bytes"] == int8_path.stat().st_size and result["float_bytes"] == float_path.stat().st_size
    assert result["quantized_ops"].get("MatMulInteger", 0) >= 1 and result["op_types"] == ["MatMul"]
    assert {e["stage"] for e in run.of("progress")} >= {"quantize", "evaluate", "time"}
    for graph in ("float", "int8"):
        figures = result[graph]
        assert 0 <= figures["ndcg@10"] <= 1 and 0 <= figures["recall@10"] <= 1
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    expected_change = (result["int8"]["ndcg@10"] - result["float"]["ndcg@10"]) / result["float"]["ndcg@10"]
    assert result["relative_ndcg_change"] == pytest.approx(expected_change)
    # The decision follows the rule from the figures it reports: the paired-bootstrap interval of the p50 ratio.
    assert result["min_speedup"] == 0.10 and result["latency"]["bootstrap_resamples"] == 2000
    ratio, lo, hi = result["p50_ratio"], result["p50_ratio_lo"], result["p50_ratio_hi"]
    assert 0 < lo <= ratio <= hi
    assert ratio == pytest.approx(result["int8"]["p50_ms"] / result["float"]["p50_ms"])
    faster = ratio <= 0.9 and hi <= 0.9
    assert result["ships"] == ("int8" if faster and expected_change >= -0.05 else "float")
    assert f"p50 ratio {ratio:.2f} [{lo:.2f}, {hi:.2f}] (needs <= 0.90)" in result["reason"] or \
        "exceeds tolerance" in result["reason"]

    # The float graph's figures are the model's own, as models.evaluate computes them on the same split.
    out, _ = trained
    evaluation = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                            "--out", str(tmp_path / "eval.json"))
    assert evaluation.returncode == 0, evaluation.stderr
    model_metrics = evaluation.last["metrics"]["model"]
    assert result["float"]["ndcg@10"] == pytest.approx(model_metrics["ndcg@10"], abs=1e-6)
    assert result["float"]["recall@10"] == pytest.approx(model_metrics["recall@10"], abs=1e-6)
    assert result["n_users"] == evaluation.last["n_users"]


def test_int8_graph_keeps_the_served_contract(quantized):
    float_path, int8_path, _ = quantized
    f, q = onnx.load(str(float_path)), onnx.load(str(int8_path))
    assert [i.name for i in q.graph.input] == ["history"] and [o.name for o in q.graph.output] == ["scores", "items"]
    assert q.graph.input[0].type == f.graph.input[0].type
    assert [o.type for o in q.graph.output] == [o.type for o in f.graph.output]
    props = {p.key: p.value for p in q.metadata_props}
    float_props = {p.key: p.value for p in f.metadata_props}
    assert props["recsys.precision"] == "int8" and all(props[k] == v for k, v in float_props.items())
    history = random_histories(50, 8, batch=4, seed=9)
    scores, items = ort.InferenceSession(str(int8_path)).run(["scores", "items"], {"history": history})
    assert scores.shape == items.shape == (4, 10) and ((items >= 1) & (items <= 50)).all()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_errors_name_the_problem(exported, tmp_path):
    _, path = exported
    other = write_dataset(tmp_path / "other", n_clusters=4)  # 40 items, the graph scores 50
    run = python_job("models.quantize", "--onnx", str(path), "--out", str(tmp_path / "x.onnx"), "--data-dir",
                     str(other))
    assert run.returncode == 1 and run.last["type"] == "DataError" and "50 items" in run.last["message"]
    assert not (tmp_path / "x.onnx").exists()

    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    run = python_job("models.quantize", "--onnx", str(tmp_path / "bare.onnx"), "--out", str(tmp_path / "y.onnx"),
                     "--data-dir", str(other))
    assert run.last["type"] == "QuantizationError" and "recsys.n_items" in run.last["message"]

    run = python_job("models.quantize", "--onnx", str(path), "--out", str(tmp_path / "z.onnx"), "--data-dir",
                     str(other), "--tolerance", "1.5")
    assert run.returncode == 2 and "--tolerance" in run.last["message"]
    assert json.dumps(run.last)  # the error line is plain JSON
