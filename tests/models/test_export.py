"""models.export: one ONNX graph (user tower -> matmul -> TopK) that matches PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import python_job
from models.masking import mask_history
from models.export import TopKRetrieval, random_histories, verify
from models.model_file import load_model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out, _ = trained
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    run = python_job("models.export", "--model", str(out / "model.pt"), "--out", str(path))
    assert run.returncode == 0, run.stderr
    return out / "model.pt", path, run.last


def test_export_result(exported):
    _, path, result = exported
    assert result["onnx_path"] == str(path) and path.is_file()
    assert result["topk_match"] is True and result["max_abs_diff"] <= result["tolerance"] == 1e-4
    assert result["top_k"] == 50  # --top-k 100 capped at n_items
    assert result["history_len"] == 8 and result["n_items"] == 50 and result["opset"] == 20
    assert result["inputs"] == [{"name": "history", "dtype": "int64", "shape": ["batch", 8]}]
    assert result["outputs"] == [
        {"name": "scores", "dtype": "float32", "shape": ["batch", 50]},
        {"name": "items", "dtype": "int64", "shape": ["batch", 50]},
    ]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["recsys.family"] == "two_tower" and props["recsys.top_k"] == "50"


def test_onnx_matches_pytorch_and_never_returns_padding(exported):
    model_path, path, _ = exported
    model, _ = load_model(str(model_path))
    history = random_histories(model.n_items, model.history_len, batch=9, seed=7)
    scores, items = ort.InferenceSession(str(path)).run(["scores", "items"], {"history": history})
    assert items.shape == (9, 50) and (items >= 1).all() and (items <= 50).all()
    assert (np.diff(scores, axis=1) <= 0).all()  # sorted, best first
    with torch.inference_mode():
        # The history window's own items are masked in the graph (serving never returns them).
        expected = mask_history(model(torch.from_numpy(history)), torch.from_numpy(history)).numpy()
    window = np.zeros((9, 51), dtype=bool)
    np.put_along_axis(window, history, True, axis=1)
    served = np.take_along_axis(window[:, 1:], items - 1, axis=1)
    for row, n_window in zip(served, window[:, 1:].sum(axis=1)):
        assert not row[: 50 - n_window].any()  # no history item is served while other items remain
    np.testing.assert_allclose(scores, np.sort(expected, axis=1)[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(expected, items - 1, axis=1), scores, atol=1e-5)


def test_verification_detects_a_mismatch(exported):
    model_path, path, _ = exported
    model, _ = load_model(str(model_path))
    module = TopKRetrieval(model, k=50)
    assert verify(str(path), module, 1e-4) == (pytest.approx(0, abs=1e-4), True)
    with torch.no_grad():
        model.item_embedding.weight[5:9] *= -3  # PyTorch now disagrees with the exported graph
    _, topk_match = verify(str(path), TopKRetrieval(model, k=50), 1e-4)
    assert not topk_match
