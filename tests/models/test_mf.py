"""models.mf (iALS with in-graph fold-in) and models/train.py's `fit` hook: the fold-in solves the training's user
system, ALS lowers its objective, the family beats popularity on planted clusters, trains the same under torchrun,
resumes exactly, and exports to the standard serving graph; the hook's events, checkpoints and resume rules."""

import io
import json
import math
import types
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_beats_popularity, assert_export_parity, python_job, torchrun_job, train_job
from models import checkpoint, train
from models.config import ConfigError, TrainConfig
from models.data import read_manifest
from models.distributed import DistContext
from models.export import random_histories
from models.families import FAMILIES
from models.mf import ALS, ImplicitMF
from models.user_item import read_user_item

MF_CONFIG = {"model": "mf", "epochs": 4, "embedding_dim": 8, "history_len": 16, "als_reg": 1.0, "als_alpha": 10.0,
             "cg_steps": 8, "log_every_seconds": 0.0}


def fit_in_process(dataset, **overrides):
    """ImplicitMF.fit without a subprocess; returns (model, epoch-end progress calls)."""
    config = TrainConfig.from_dict({**MF_CONFIG, **overrides})
    calls = []
    model = ImplicitMF.fit(config, read_manifest(str(dataset)), str(dataset), DistContext(),
                           lambda **fields: calls.append(fields))
    return model, calls, config


def random_model(n_items=30, dim=8, history_len=6, seed=0, **kw) -> ImplicitMF:
    torch.manual_seed(seed)
    model = ImplicitMF(n_items, dim, history_len, **kw)
    model.set_factors(torch.randn(n_items, dim) * 0.5, torch.randn(dim))
    return model.eval()


def test_registered_and_validated():
    assert FAMILIES["mf"] is ImplicitMF
    model = ImplicitMF.from_config(TrainConfig.from_dict({"model": "mf", "cg_steps": 3, "als_reg": 2}), n_items=5)
    assert (model.cg_steps, model.reg, model.alpha) == (3, 2.0, TrainConfig().als_alpha)
    for values, key in (({"als_reg": 0}, "als_reg"), ({"als_alpha": -1.0}, "als_alpha"), ({"cg_steps": 0}, "cg_steps"),
                        ({"als_reg": float("inf")}, "als_reg"), ({"cg_steps": 2.5}, "cg_steps")):
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict({"model": "mf", **values})


def test_contract_scores_are_user_times_item_vectors():
    model = random_model()
    history = torch.from_numpy(random_histories(30, 6, batch=16, seed=3))
    with torch.inference_mode():
        scores = model(history)
        torch.testing.assert_close(scores, model.user_vectors(history) @ model.item_vectors().T)
    assert scores.shape == (16, 30) and torch.isfinite(scores).all()


def test_fold_in_solves_the_user_system_with_repeats_and_padding():
    """The CG fold-in equals the exact solve of (reg I + G + alpha sum_i n_i y_i y_i^T) x = sum_i (1 + alpha n_i) y_i,
    n_i the item's count in the history; padding is ignored and the order of the history does not matter."""
    model = random_model(cg_steps=40, als_reg=0.5, als_alpha=3.0)
    history = torch.tensor([[0, 0, 3, 5, 3, 7], [0, 0, 7, 3, 5, 3]])
    y = model.item_factors.double()
    counts = {3: 2, 5: 1, 7: 1}
    a = model.reg * torch.eye(8, dtype=torch.float64) + y[1:].T @ y[1:]
    b = torch.zeros(8, dtype=torch.float64)
    for item, n in counts.items():
        a += model.alpha * n * torch.outer(y[item], y[item])
        b += (1 + model.alpha * n) * y[item]
    exact = torch.linalg.solve(a, b)
    with torch.inference_mode():
        folded = model.user_vectors(history).double()
    torch.testing.assert_close(folded, exact.expand(2, 8), rtol=1e-4, atol=1e-5)


def test_empty_history_scores_with_the_constant_vector():
    model = random_model()
    empty = torch.zeros(3, 6, dtype=torch.int64)
    with torch.inference_mode():
        torch.testing.assert_close(model.user_vectors(empty), model.empty_user.expand(3, 8))
        assert torch.isfinite(model(empty)).all() and model(empty).std() > 0


def test_als_lowers_the_objective_and_fold_in_matches_the_trained_factors(dataset):
    model, calls, config = fit_in_process(dataset)
    losses = [c["loss"] for c in calls]
    assert [c["epoch"] for c in calls] == [1, 2, 3, 4]
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0]  # ALS never goes up
    assert all(isinstance(c["model"], ImplicitMF) and c["samples_per_sec"] > 0 for c in calls)

    # Parity: the training's last user step, recomputed from the trained item factors, against the in-graph fold-in
    # of each training user's train history (users whose history fits in history_len).
    manifest = read_manifest(str(dataset))
    matrix = read_user_item(str(dataset), manifest)
    als = ALS(matrix, config.embedding_dim, config.als_reg, config.als_alpha)
    trained = als.solve_users(calls[-1]["state"]["item_factors"])
    indptr, cols, _ = matrix.by_user()
    users = [u for u in range(matrix.n_users) if 0 < indptr[u + 1] - indptr[u] <= config.history_len]
    history = np.zeros((len(users), config.history_len), dtype=np.int64)
    for row, u in enumerate(users):
        items = cols[indptr[u] : indptr[u + 1]] + 1
        history[row, config.history_len - len(items) :] = items
    with torch.inference_mode():
        folded = model.user_vectors(torch.from_numpy(history)).double()
    expected = trained[torch.tensor(users)]
    relative = (folded - expected).norm(dim=1) / expected.norm(dim=1)
    assert len(users) > 100 and float(relative.max()) < 1e-3
    # The empty history's vector is the mean trained user factor.
    active = torch.from_numpy(matrix.user_degree() > 0)
    torch.testing.assert_close(model.empty_user.double(), trained[active].mean(dim=0), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def mf_trained(dataset, tmp_path_factory):
    return train_job(dataset, tmp_path_factory.mktemp("mf"), MF_CONFIG)


def test_train_events_and_files(mf_trained, dataset):
    out, run = mf_trained
    start = run.events[0]
    assert start["event"] == "start" and start["model"] == "mf" and start["steps_per_epoch"] == 1
    assert start["n_samples"] == json.loads((dataset / "manifest.json").read_text())["counts"]["train"]
    assert start["n_params"] == (50 + 1) * 8 + 8 * 8 * 2 + 8  # item factors, Gramian, preconditioner, empty vector
    progress = run.of("progress")
    assert [p["epoch"] for p in progress] == [1, 2, 3, 4]
    assert all(p["step"] == p["steps_per_epoch"] == 1 for p in progress)
    assert [c["epoch"] for c in run.of("checkpoint")] == [1, 2, 3, 4]
    ckpt = checkpoint.load(str(out / "checkpoints" / "epoch-2.pt"))
    assert ckpt["family"] == "mf" and ckpt["fit_state"]["item_factors"].dtype == torch.float64
    result = run.last
    assert result["final_loss"] == progress[-1]["loss"] and result["world_size"] == 1 and result["epochs"] == 4
    assert result["samples_per_sec"] > 0 and result["config"]["als_alpha"] == MF_CONFIG["als_alpha"]
    model = checkpoint.load(str(out / "model.pt"), expect=(checkpoint.MODEL_FORMAT,))
    assert model["family"] == "mf" and model["history_len"] == MF_CONFIG["history_len"]


def test_beats_popularity_on_planted_clusters(mf_trained, dataset, tmp_path):
    assert_beats_popularity(dataset, mf_trained[0] / "model.pt", tmp_path)


def test_export_parity(mf_trained, tmp_path):
    run = assert_export_parity(mf_trained[0] / "model.pt", tmp_path / "model.onnx")
    assert [i["name"] for i in run.last["inputs"]] == ["history"]


def test_resume_repeats_the_uninterrupted_run(mf_trained, dataset, tmp_path):
    out, first = mf_trained
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--resume", str(out / "checkpoints" / "epoch-2.pt"))
    assert run.returncode == 0, run.stderr
    assert run.events[0]["start_epoch"] == 3 and run.last["resumed_from_epoch"] == 2
    assert [c["epoch"] for c in run.of("checkpoint")] == [3, 4]
    assert run.last["final_loss"] == pytest.approx(first.last["final_loss"], rel=1e-12)


def test_torchrun_shards_the_solves_and_matches_one_process(mf_trained, dataset, tmp_path):
    _, single = mf_trained
    run = torchrun_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                       "--config-json", json.dumps(MF_CONFIG))
    assert run.returncode == 0, run.stderr
    assert run.events[0]["world_size"] == 2 and run.last["world_size"] == 2
    # Each rank solves half the rows; after the all_gather both hold the same factors as one process would.
    assert run.last["final_loss"] == pytest.approx(single.last["final_loss"], rel=1e-9)


# --- models/train.py's fit hook, with a stand-in family --------------------------------------------------------------


class Stub(nn.Module):
    """A family with its own fit that never checkpoints and cannot resume (no `resume` parameter)."""

    family = "stub_fit"
    fits = 0

    def __init__(self, n_items: int, history_len: int):
        super().__init__()
        self.n_items, self.history_len = n_items, history_len
        self.register_buffer("weights", torch.zeros(n_items))

    @classmethod
    def from_config(cls, config, n_items):
        return cls(n_items, config.history_len)

    @classmethod
    def fit(cls, config, manifest, data_dir, ctx, emit_progress):
        cls.fits += 1
        model = cls.from_config(config, manifest.n_items)
        for epoch in range(1, config.epochs + 1):
            emit_progress(epoch=epoch, step=1, steps_per_epoch=2, loss=1.0 / epoch, samples_per_sec=10.0)
            model.weights += 1
            emit_progress(epoch=epoch, step=2, steps_per_epoch=2, loss=0.5 / epoch, samples_per_sec=20.0,
                          model=nn.Linear(1, 1), stage="only")  # not this family's module: no checkpoint
        return model


def run_train(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        train.train(train.parse_args(argv), DistContext())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_fit_hook_events_checkpoint_and_resume_rules(dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(FAMILIES, Stub.family, Stub)
    config = json.dumps({"model": Stub.family, "epochs": 2})
    events = run_train(["--data-dir", str(dataset), "--out-dir", str(tmp_path), "--config-json", config])
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "progress", "progress", "progress", "progress", "checkpoint", "result"]
    assert events[0]["steps_per_epoch"] == 1 and events[0]["n_params"] == 50
    assert events[2] == {"event": "progress", "epoch": 1, "step": 2, "steps_per_epoch": 2, "loss": 0.5,
                         "samples_per_sec": 20.0, "stage": "only"}
    final = checkpoint.load(events[5]["path"])
    assert events[5]["epoch"] == 2 and final["fit_complete"] and final["family"] == Stub.family
    assert events[-1]["final_loss"] == 0.25 and events[-1]["samples_per_sec"] == 20.0
    assert torch.equal(checkpoint.load(events[-1]["model_path"])["model_state"]["weights"], torch.full((50,), 2.0))

    # A finished run resumes without training again (a retried activity after the run completed).
    fits = Stub.fits
    again = run_train(["--data-dir", str(dataset), "--out-dir", str(tmp_path / "again"), "--resume", events[5]["path"]])
    assert Stub.fits == fits and again[-1]["event"] == "result" and again[-1]["resumed_from_epoch"] == 2
    # Continuing it needs a fit that takes `resume`: a clear refusal, naming the family.
    with pytest.raises(checkpoint.CheckpointError, match="stub_fit.*cannot continue"):
        run_train(["--data-dir", str(dataset), "--out-dir", str(tmp_path / "more"), "--resume", events[5]["path"],
                   "--config-json", json.dumps({"model": Stub.family, "epochs": 3})])
