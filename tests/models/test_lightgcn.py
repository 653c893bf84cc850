"""models.lightgcn: the propagation matches a dense reference (values and gradients), the serving fold-in equals a
training user's propagated embedding without its ego term, BPR training lowers the loss and beats popularity on
planted clusters, runs under torchrun, resumes exactly, and exports to the standard serving graph."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import assert_beats_popularity, assert_export_parity, python_job, torchrun_job, train_job
from models.config import ConfigError, TrainConfig
from models.data import read_manifest
from models.distributed import DistContext
from models.export import random_histories
from models.families import FAMILIES
from models.lightgcn import LightGCN, Propagation, normalised_adjacency, sample_negatives
from models.user_item import read_user_item

GCN_CONFIG = {"model": "lightgcn", "epochs": 3, "embedding_dim": 16, "history_len": 16, "n_gcn_layers": 2,
              "batch_size": 256, "lr": 0.02, "gcn_reg": 1e-4, "log_every_seconds": 0.0}


def random_model(n_items=30, dim=8, history_len=6) -> LightGCN:
    torch.manual_seed(0)
    model = LightGCN(n_items, dim, history_len)
    with torch.no_grad():
        model.item_fold[1:] = torch.randn(n_items, dim)
        model.item_final.copy_(torch.randn(n_items, dim))
        model.empty_user.copy_(torch.randn(dim))
    return model.eval()


def test_registered_and_validated():
    assert FAMILIES["lightgcn"] is LightGCN
    model = LightGCN.from_config(TrainConfig.from_dict({"model": "lightgcn", "n_gcn_layers": 3}), n_items=5)
    assert model.n_layers == 3 and model.item_vectors().shape == (5, TrainConfig().embedding_dim)
    for values, key in (({"n_gcn_layers": 0}, "n_gcn_layers"), ({"gcn_reg": -1e-4}, "gcn_reg"),
                        ({"gcn_reg": float("nan")}, "gcn_reg"), ({"n_gcn_layers": "2"}, "n_gcn_layers")):
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict({"model": "lightgcn", **values})
    assert "n_gcn_layers" in TrainConfig.ARCHITECTURE_KEYS  # a resumed run cannot change the propagation depth


def test_contract_and_history_as_a_set():
    model = random_model()
    history = torch.from_numpy(random_histories(30, 6, batch=16, seed=3))
    with torch.inference_mode():
        scores = model(history)
        torch.testing.assert_close(scores, model.user_vectors(history) @ model.item_vectors().T)
        assert scores.shape == (16, 30) and torch.isfinite(scores).all()
        # One layer's normalised sum over the distinct items: repeats and order do not count, padding is ignored.
        a = model.user_vectors(torch.tensor([[0, 0, 4, 9, 4, 17]]))
        b = model.user_vectors(torch.tensor([[0, 0, 0, 17, 9, 4]]))
        expected = (model.item_fold[4] + model.item_fold[9] + model.item_fold[17]) / 3**0.5
        torch.testing.assert_close(a, expected.unsqueeze(0))
        torch.testing.assert_close(b, a)
        # An empty history gets the constant vector.
        torch.testing.assert_close(model.user_vectors(torch.zeros(2, 6, dtype=torch.int64)),
                                   model.empty_user.expand(2, 8))


def test_propagation_matches_a_dense_reference(dataset):
    matrix = read_user_item(str(dataset), read_manifest(str(dataset)))
    adjacency = normalised_adjacency(matrix).to_dense()
    n = matrix.n_users + matrix.n_items
    dense = torch.zeros(n, n)
    dense[matrix.user, matrix.n_users + matrix.item] = 1.0
    dense += dense.T.clone()
    degree = dense.sum(dim=1)
    inv = torch.where(degree > 0, degree.clamp_min(1).rsqrt(), torch.zeros_like(degree))
    torch.testing.assert_close(adjacency, inv[:, None] * dense * inv[None, :])

    torch.manual_seed(0)
    graph = Propagation(matrix, dim=4, n_layers=2)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    neg = torch.tensor([10, 20, 30])
    loss = graph(users, pos, neg, 0.0)
    loss.backward()
    # The same loss with dense matmuls and autograd's own gradient (the sparse path uses A = A^T in backward).
    ego = torch.cat([graph.user, graph.item]).detach().requires_grad_(True)
    x, layers = ego, [ego]
    for _ in range(2):
        x = adjacency @ x
        layers.append(x)
    final = torch.stack(layers).mean(dim=0)
    u, items = final[: matrix.n_users][users], final[matrix.n_users :]
    reference = torch.nn.functional.softplus(-((u * items[pos]).sum(1) - (u * items[neg]).sum(1))).mean()
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(torch.cat([graph.user.grad, graph.item.grad]), ego.grad)


def test_negatives_avoid_the_users_items():
    keys = np.array([0 * 5 + 1, 0 * 5 + 2, 1 * 5 + 0, 1 * 5 + 1, 1 * 5 + 2, 1 * 5 + 3])  # user * n_items + item, sorted
    users = np.array([0] * 200 + [1] * 200)
    neg = sample_negatives(users, keys, 5, np.random.default_rng(0))
    assert set(neg[:200]) <= {0, 3, 4} and set(neg[200:]) == {4}


def test_fold_in_is_the_trained_user_embedding_without_its_ego_term(dataset):
    config = TrainConfig.from_dict(GCN_CONFIG)
    manifest = read_manifest(str(dataset))
    calls = []
    model = LightGCN.fit(config, manifest, str(dataset), DistContext(), lambda **f: calls.append(f))
    epoch_ends = [c for c in calls if c["step"] == c["steps_per_epoch"]]
    assert [c["epoch"] for c in epoch_ends] == [1, 2, 3] and epoch_ends[-1]["model"] is model
    assert epoch_ends[-1]["loss"] < epoch_ends[0]["loss"] < np.log(2)  # BPR starts at log 2 for random embeddings

    matrix = read_user_item(str(dataset), manifest)
    graph = Propagation(matrix, config.embedding_dim, config.n_gcn_layers)
    graph.load_state_dict(epoch_ends[-1]["state"]["graph"])
    with torch.no_grad():
        user_final, item_final = graph.final()
        expected = user_final - graph.user / (config.n_gcn_layers + 1)
    torch.testing.assert_close(model.item_vectors(), item_final)
    indptr, cols, _ = matrix.by_user()
    users = [u for u in range(matrix.n_users) if 0 < indptr[u + 1] - indptr[u] <= config.history_len]
    history = np.zeros((len(users), config.history_len), dtype=np.int64)
    for row, u in enumerate(users):
        items = cols[indptr[u] : indptr[u + 1]] + 1
        history[row, config.history_len - len(items) :] = items
    with torch.inference_mode():
        folded = model.user_vectors(torch.from_numpy(history))
    assert len(users) > 100
    torch.testing.assert_close(folded, expected[torch.tensor(users)], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def gcn_trained(dataset, tmp_path_factory):
    return train_job(dataset, tmp_path_factory.mktemp("lightgcn"), GCN_CONFIG)


def test_train_events(gcn_trained):
    out, run = gcn_trained
    start = run.events[0]
    steps = start["steps_per_epoch"]
    assert start["model"] == "lightgcn" and steps == -(-start["n_samples"] // GCN_CONFIG["batch_size"])
    epoch_ends = [p for p in run.of("progress") if p["step"] == p["steps_per_epoch"]]
    assert [p["epoch"] for p in epoch_ends] == [1, 2, 3] and all(p["steps_per_epoch"] == steps for p in epoch_ends)
    assert epoch_ends[-1]["loss"] < epoch_ends[0]["loss"] and run.last["final_loss"] == epoch_ends[-1]["loss"]
    assert [c["epoch"] for c in run.of("checkpoint")] == [1, 2, 3]
    assert (out / "model.pt").is_file() and run.last["samples_per_sec"] > 0


def test_beats_popularity_on_planted_clusters(gcn_trained, dataset, tmp_path):
    assert_beats_popularity(dataset, gcn_trained[0] / "model.pt", tmp_path)


def test_export_parity(gcn_trained, tmp_path):
    assert_export_parity(gcn_trained[0] / "model.pt", tmp_path / "model.onnx")


def test_resume_repeats_the_uninterrupted_run(gcn_trained, dataset, tmp_path):
    out, first = gcn_trained
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--resume", str(out / "checkpoints" / "epoch-1.pt"))
    assert run.returncode == 0, run.stderr
    assert run.events[0]["start_epoch"] == 2 and run.last["resumed_from_epoch"] == 1
    # Embeddings and Adam state from the checkpoint, negatives and order seeded by (seed, epoch[, rank]).
    assert run.last["final_loss"] == pytest.approx(first.last["final_loss"], rel=1e-6)


def test_torchrun(dataset, tmp_path):
    run = torchrun_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                       "--config-json", json.dumps({**GCN_CONFIG, "epochs": 2}))
    assert run.returncode == 0, run.stderr
    start = run.events[0]
    assert start["world_size"] == 2 and start["steps_per_epoch"] == math.ceil(math.ceil(start["n_samples"] / 2) / 256)
    assert [c["epoch"] for c in run.of("checkpoint")] == [1, 2] and run.last["world_size"] == 2
    assert run.last["final_loss"] is not None and 0 < run.last["final_loss"] < math.log(2)
