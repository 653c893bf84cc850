"""models.sequential: the SASRec-style family satisfies the families.py contract, learns, trains under torchrun and
exports to the same serving graph as the two-tower model."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG, python_job, torchrun_job
from models.config import ConfigError, TrainConfig
from models.export import random_histories
from models.families import FAMILIES
from models.model_file import load_model
from models.sequential import Sequential

SEQ_CONFIG = {**TINY_CONFIG, "model": "sequential", "n_layers": 2, "n_heads": 2, "dropout": 0.1, "epochs": 3,
              "lr": 0.005}


def small_model(**kw) -> Sequential:
    torch.manual_seed(0)
    return Sequential(n_items=30, embedding_dim=16, hidden_dim=32, history_len=6, n_heads=2, **kw).eval()


def test_registered_and_configurable():
    assert FAMILIES["sequential"] is Sequential
    config = TrainConfig.from_dict({"model": "sequential", "n_layers": 3, "n_heads": 4, "dropout": 0.0})
    model = Sequential.from_config(config, n_items=20)
    assert len(model.blocks) == 3 and model.blocks[0].attention.n_heads == 4
    with pytest.raises(ConfigError, match="n_heads"):
        TrainConfig.from_dict({"model": "sequential", "embedding_dim": 10, "n_heads": 4})
    with pytest.raises(ConfigError, match="dropout"):
        TrainConfig.from_dict({"dropout": 1.0})
    with pytest.raises(ConfigError, match="n_layers"):
        TrainConfig.from_dict({"n_layers": 0})
    assert TrainConfig().model == "two_tower"  # the default family is unchanged


def test_contract_scores_are_user_times_item_vectors():
    model = small_model()
    history = torch.from_numpy(random_histories(30, 6, batch=16, seed=3))
    with torch.inference_mode():
        scores = model(history)
        expected = model.user_vectors(history) @ model.item_vectors().T
    assert scores.shape == (16, 30) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores, expected)
    assert model.item_vectors().shape == (30, 16)


def test_empty_history_uses_the_learned_vector():
    model = small_model()
    with torch.no_grad():
        model.empty_history.copy_(torch.arange(16, dtype=torch.float32))
    empty = torch.zeros(2, 6, dtype=torch.int64)
    with torch.inference_mode():
        torch.testing.assert_close(model.user_vectors(empty), model.empty_history.expand(2, 16))
    model.train()  # dropout on: still finite (no NaN from all-masked attention rows)
    assert torch.isfinite(model(empty)).all()


def test_order_matters_and_padding_is_ignored():
    model = small_model(dropout=0.0)
    a = torch.tensor([[0, 0, 0, 4, 9, 17]])
    reversed_order = torch.tensor([[0, 0, 0, 17, 9, 4]])
    with torch.inference_mode():
        ua, ub = model.user_vectors(a), model.user_vectors(reversed_order)
        assert not torch.allclose(ua, ub, atol=1e-4)  # a sequence model, not a bag of items
        # Padding positions neither attend nor are attended to: the items' embedding at row 0 cannot leak in.
        model.item_embedding.weight[0] = 100.0
        torch.testing.assert_close(model.user_vectors(a), ua)


def test_last_position_shortcut_matches_the_full_computation():
    """The final block computes only the last position; it must equal running every position through it."""
    model = small_model(dropout=0.0)
    history = torch.from_numpy(random_histories(30, 6, batch=8, seed=5))
    real = history > 0
    with torch.inference_mode():
        x = model.item_embedding(history) * model.scale + model.position_embedding
        keep = real.unsqueeze(-1).float()
        x = x * keep
        bias = torch.where(model.causal.unsqueeze(0) & real.unsqueeze(1), 0.0, -1e9).unsqueeze(1)
        for block in model.blocks:
            x = block(x, bias, last_only=False) * keep
        full = torch.where(real.any(1, keepdim=True), model.final_norm(x[:, -1]), model.empty_history)
        torch.testing.assert_close(model.user_vectors(history), full)


@pytest.fixture(scope="module")
def trained_seq(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-seq")
    result = torchrun_job("models.train", "--data-dir", str(dataset), "--out-dir", str(out), "--config-json",
                          json.dumps(SEQ_CONFIG))
    assert result.returncode == 0, result.stderr
    return out, result


def test_trains_under_torchrun_and_beats_popularity(trained_seq, dataset, tmp_path):
    out, result = trained_seq
    assert result.of("start")[0]["model"] == "sequential" and result.of("start")[0]["world_size"] == 2
    losses = [e["loss"] for e in result.of("progress") if e["step"] == e["steps_per_epoch"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    model, meta = load_model(str(out / "model.pt"))
    assert isinstance(model, Sequential) and meta["family"] == "sequential"
    evaluation = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                            "--out", str(tmp_path / "eval.json"))
    assert evaluation.returncode == 0, evaluation.stderr
    metrics = evaluation.last["metrics"]
    assert metrics["model"]["ndcg@10"] > metrics["popularity"]["ndcg@10"], metrics


def test_exports_to_the_same_serving_graph(trained_seq, tmp_path):
    out, _ = trained_seq
    run = python_job("models.export", "--model", str(out / "model.pt"), "--out", str(tmp_path / "seq.onnx"),
                     "--top-k", "10")
    assert run.returncode == 0, run.stderr
    result = run.last
    assert result["topk_match"] is True and result["max_abs_diff"] <= 1e-4 and result["opset"] == 20
    assert result["inputs"] == [{"name": "history", "dtype": "int64", "shape": ["batch", 8]}]
    assert [o["name"] for o in result["outputs"]] == ["scores", "items"]
    assert all(o["shape"] == ["batch", 10] for o in result["outputs"])
    assert np.isfinite(result["max_abs_diff"])
