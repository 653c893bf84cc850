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
from models.quantize import decide, full_ranking_variant, relative_change


# ---- the gate ---------------------------------------------------------------------------------------------------


def test_int8_ships_when_quality_holds_and_it_is_faster():
    ships, reason, change = decide(0.300, 0.2985, float_p50=0.30, int8_p50=0.12, tolerance=0.01)
    assert ships == "int8" and change == pytest.approx(-0.005)
    assert "within tolerance 1%" in reason and "0.120 ms vs 0.300 ms" in reason
    assert decide(0.3, 0.31, 0.3, 0.2, 0.0)[0] == "int8"  # better quality passes a zero tolerance


def test_float_ships_when_int8_loses_too_much_ndcg():
    ships, reason, change = decide(0.300, 0.293, float_p50=0.30, int8_p50=0.12, tolerance=0.01)
    assert ships == "float" and change == pytest.approx(-0.07 / 3)
    assert reason.startswith("int8 NDCG@10 -2.33% exceeds tolerance 1%"), reason


def test_float_ships_when_int8_is_not_faster():
    ships, reason, _ = decide(0.300, 0.300, float_p50=0.29, int8_p50=0.31, tolerance=0.01)
    assert ships == "float" and reason == "int8 not faster: p50 0.310 ms vs 0.290 ms"
    assert decide(0.3, 0.3, 0.29, 0.29, 0.01)[0] == "float"  # a tie is not faster


def test_relative_change_of_a_zero_baseline():
    assert relative_change(0.0, 0.0) == 0.0 and relative_change(0.1, 0.0) == math.inf
    assert decide(0.0, 0.0, 0.3, 0.1, 0.01)[0] == "int8"


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
        np.testing.assert_allclose(full, model(torch.from_numpy(history)).numpy(), atol=1e-5)


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
    assert (result["ships"], result["reason"]) == decide(
        result["float"]["ndcg@10"], result["int8"]["ndcg@10"], result["float"]["p50_ms"], result["int8"]["p50_ms"],
        0.05)[:2]

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
