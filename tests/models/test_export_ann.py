"""models.export with HNSW retrieval (models/ann_export.py): the user graph, the item vectors and the check's queries
beside the exact graph, and `user @ items^T` reproducing the exact graph's top-K; nothing extra when it does not
apply."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_CONFIG, python_job
from models import checkpoint
from models.ann_export import N_QUERIES, QUERY_SEED, ann_applies, ann_paths, export_ann
from models.config import ConfigError, TrainConfig
from models.export import ExportVerificationError, example_inputs
from models.model_file import load_model


def with_config(model_pt, out_dir, **overrides):
    """A copy of a trained model file whose stored config has `overrides` (the weights are the same)."""
    obj = checkpoint.load(str(model_pt))
    obj["config"] = {**obj["config"], **overrides}
    return checkpoint.save_atomic(obj, str(out_dir / "model.pt"))


def export(model_pt, out):
    run = python_job("models.export", "--model", str(model_pt), "--out", str(out), "--top-k", "10")
    assert run.returncode == 0, run.stderr
    return run.last


def read_f32(path, dims):
    return np.fromfile(path, dtype="<f4").reshape(-1, dims)


def masked_scores(user, items, history):
    """user @ items^T with the history window's items at -inf: what the exact graph ranks."""
    scores = user @ items.T
    for row, h in zip(scores, history):
        row[h[h > 0] - 1] = -np.inf
    return scores


@pytest.fixture(scope="module")
def hnsw(trained, tmp_path_factory):
    out, _ = trained
    d = tmp_path_factory.mktemp("ann")
    model_pt = with_config(out / "model.pt", d, retrieval="hnsw")
    return model_pt, d / "model.onnx", export(model_pt, d / "model.onnx")


def test_hnsw_writes_the_user_graph_items_and_queries(hnsw):
    _, onnx_path, result = hnsw
    ann = result["ann"]
    assert result["kind"] == "single" and result["onnx_path"] == str(onnx_path) and onnx_path.is_file()
    assert ann["user_graph"] == str(onnx_path.with_name("model.user.onnx"))
    assert ann["items"] == str(onnx_path.with_name("model.items.f32"))
    assert ann["queries"] == str(onnx_path.with_name("model.queries.f32"))
    assert ann["dims"] == 16 and ann["n_items"] == 50 and ann["n_queries"] == N_QUERIES
    assert ann["max_abs_diff"] <= result["tolerance"]
    assert read_f32(ann["items"], 16).shape == (50, 16)
    assert read_f32(ann["queries"], 16).shape == (N_QUERIES, 16)
    # Nothing but the graphs and the two matrices: no temporary file left behind.
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == sorted(
        ["model.pt", "model.onnx", "model.user.onnx", "model.items.f32", "model.queries.f32"])


def test_user_graph_times_items_reproduces_the_exact_graph(hnsw):
    model_pt, onnx_path, result = hnsw
    ann = result["ann"]
    history = example_inputs(load_model(str(model_pt))[0], batch=32, seed=5)["history"]
    (user,) = ort.InferenceSession(ann["user_graph"]).run(["user"], {"history": history})
    assert user.shape == (32, 16) and user.dtype == np.float32
    scores = masked_scores(user, read_f32(ann["items"], 16), history)
    exact_scores, exact_items = ort.InferenceSession(str(onnx_path)).run(["scores", "items"], {"history": history})
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(np.take_along_axis(scores, top, axis=1), exact_scores, atol=1e-5)
    # Same items at each rank, except where two scores tie (then either order is right).
    ours_at_exact = np.take_along_axis(scores, exact_items - 1, axis=1)
    assert ((top + 1 == exact_items) | (np.abs(ours_at_exact - exact_scores) <= 1e-5)).all()


def test_queries_are_the_user_graph_on_fresh_random_histories(hnsw):
    model_pt, _, result = hnsw
    ann = result["ann"]
    model, _ = load_model(str(model_pt))
    feed = example_inputs(model, batch=N_QUERIES, seed=QUERY_SEED)
    with torch.inference_mode():
        expected = model.user_vectors(torch.from_numpy(feed["history"])).numpy()
    np.testing.assert_allclose(read_f32(ann["queries"], 16), expected, atol=1e-4)
    # Not the parity set: the index is checked on histories the graph was not compared on.
    assert not np.array_equal(feed["history"][:64], example_inputs(model)["history"])


def test_auto_below_ann_min_items_writes_nothing_extra(trained, tmp_path):
    out, _ = trained
    model_pt = with_config(out / "model.pt", tmp_path, retrieval="auto")  # ann_min_items 100000 > 50 items
    result = export(model_pt, tmp_path / "model.onnx")
    assert "ann" not in result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]


@pytest.mark.parametrize(
    ("retrieval", "min_items", "applies"),
    [("auto", 50, True), ("auto", 51, False), ("hnsw", 10**9, True), ("exact", 1, False)],
)
def test_when_hnsw_applies(trained, retrieval, min_items, applies):
    out, _ = trained
    model, _ = load_model(str(out / "model.pt"))  # 50 items
    assert ann_applies(model, TrainConfig(retrieval=retrieval, ann_min_items=min_items)) is applies


def test_a_failed_check_leaves_no_file(trained, tmp_path):
    out, _ = trained
    model, _ = load_model(str(out / "model.pt"))
    with pytest.raises(ExportVerificationError, match="user graph vs PyTorch"):
        export_ann(model, "two_tower", str(tmp_path / "model.onnx"), tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []
    assert set(ann_paths(str(tmp_path / "model.onnx"))) == {"user_graph", "items", "queries"}


def test_time_aware_family_user_graph_takes_the_times(dataset, tmp_path):
    config = {**TINY_CONFIG, "epochs": 1, "model": "gru", "retrieval": "hnsw"}
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--config-json", json.dumps(config))
    assert run.returncode == 0, run.stderr
    result = export(tmp_path / "model.pt", tmp_path / "model.onnx")
    session = ort.InferenceSession(result["ann"]["user_graph"])
    assert [i.name for i in session.get_inputs()] == ["history", "timestamps", "query_time"]
    feed = example_inputs(load_model(str(tmp_path / "model.pt"))[0], batch=8, seed=3)
    (user,) = session.run(["user"], feed)
    scores = masked_scores(user, read_f32(result["ann"]["items"], user.shape[1]), feed["history"])
    exact_scores, _ = ort.InferenceSession(str(tmp_path / "model.onnx")).run(["scores", "items"], feed)
    np.testing.assert_allclose(np.sort(scores, axis=1)[:, ::-1][:, :10], exact_scores, atol=1e-5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"retrieval": "ann"}, "'retrieval' must be one of auto, exact, hnsw, got 'ann'"),
        ({"retrieval": "hnsw", "model": "cascade"}, "single-stage retrieval families only"),
        ({"ann_min_items": 0}, "'ann_min_items' must be >= 1, got 0"),
        ({"ann_min_items": 1.5}, "'ann_min_items' expects int"),
    ],
)
def test_config_errors_name_the_key_and_value(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)
