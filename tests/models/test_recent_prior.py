"""models.recent_prior: the wrapper keeps the retrieval contract (two-tower and a `uses_time` family), beta 0 is the
base, the prior survives save/load and export, beta is chosen on the valid split (0 when popularity does not help,
> 0 when it does) with the counts of the right window, and models.train wraps model.pt for the generic loop and for
a family with `fit`."""

import json

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import TINY_CONFIG, python_job
from models import checkpoint, train
from models.config import ConfigError, TrainConfig
from models.continuous_time import Gru
from models.data import read_manifest, read_split
from models.export import example_inputs, random_histories
from models.masking import mask_history
from models.model_file import load_model
from models.recent_prior import DEFAULT_BETAS, RecentPrior, beta_grid, fit_recent_prior, window_ends
from models.two_tower import TwoTower

DAY = 86_400
SMALL = {"embedding_dim": 8, "hidden_dim": 16, "history_len": 6}


def base_model(family=TwoTower, n_items=30, seed=0, **config):
    torch.manual_seed(seed)
    model = family.from_config(TrainConfig.from_dict({"model": family.family, **SMALL, **config}), n_items)
    return model.eval()


def inputs_of(model, seed=0):
    return [torch.from_numpy(v) for v in example_inputs(model, batch=16, seed=seed).values()]


@pytest.mark.parametrize("family", [TwoTower, Gru])
def test_scores_are_user_times_item_vectors_plus_the_prior(family):
    base = base_model(family)
    counts = np.random.default_rng(1).integers(0, 50, size=30).astype(np.float32)
    wrapped = RecentPrior(base, counts, beta=0.7).eval()
    assert (wrapped.n_items, wrapped.history_len, wrapped.uses_time) == (30, 6, family is Gru)
    inputs = inputs_of(wrapped)
    assert len(inputs) == (3 if family is Gru else 1)
    with torch.inference_mode():
        scores = wrapped(*inputs)
        users, items = wrapped.user_vectors(*inputs), wrapped.item_vectors()
        expected = base(*inputs) + 0.7 * torch.log1p(torch.from_numpy(counts))
    assert users.shape == (16, base.user_vectors(*inputs).shape[1] + 1) and items.shape == (30, users.shape[1])
    torch.testing.assert_close(scores, users @ items.T)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)


def test_beta_zero_is_the_base_ranking():
    base = base_model()
    counts = np.random.default_rng(2).integers(0, 1000, size=30)
    wrapped = RecentPrior(base, counts, beta=0.0).eval()
    history = torch.from_numpy(random_histories(30, 6, batch=32, seed=4))
    with torch.inference_mode():
        ours, theirs = wrapped(history), base(history)
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(torch.topk(ours, 10).indices, torch.topk(theirs, 10).indices)
    # And a large beta is not the base ranking: the prior reaches the scores.
    with torch.inference_mode():
        hot = RecentPrior(base, counts, beta=100.0)(history)
    assert torch.equal(torch.argmax(hot, dim=1), torch.full((32,), int(np.argmax(counts))))


def test_bad_inputs_and_config_are_refused():
    base = base_model()
    with pytest.raises(ValueError, match="recent_counts"):
        RecentPrior(base, np.ones(29))
    with pytest.raises(ValueError, match="recent_counts"):
        RecentPrior(base, -np.ones(30))
    with pytest.raises(ValueError, match="beta"):
        RecentPrior(base, np.ones(30), beta=-1.0)
    with pytest.raises(TypeError, match="single-stage"):
        RecentPrior(torch.nn.Linear(2, 2))
    for values, key in (({"recent_prior_days": -1}, "recent_prior_days"),
                        ({"recent_prior_days": float("inf")}, "recent_prior_days"),
                        ({"recent_prior_betas": []}, "recent_prior_betas"),
                        ({"recent_prior_betas": [0.1, -1]}, "recent_prior_betas"),
                        ({"recent_prior_betas": ["a"]}, "recent_prior_betas"),
                        ({"recent_prior_betas": 0.5}, "recent_prior_betas"),
                        ({"model": "cascade", "recent_prior_days": 14}, "recent_prior_days")):
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict(values)
    config = TrainConfig.from_dict({"recent_prior_days": 14, "recent_prior_betas": [2, 0.5]})
    assert config.recent_prior_days == 14.0 and config.recent_prior_betas == [2.0, 0.5]
    assert TrainConfig.from_dict(config.to_dict()) == config  # a saved config reads back
    assert beta_grid(config) == [0.0, 0.5, 2.0]  # 0 always tried
    assert beta_grid(TrainConfig()) == sorted(DEFAULT_BETAS) and TrainConfig().recent_prior_days == 0.0


def save(model, config, path, fmt=checkpoint.MODEL_FORMAT):
    header = train.model_header(TrainConfig.from_dict(config), model)
    return checkpoint.save_atomic({**header, "format": fmt, "epochs": 1, "final_loss": 1.0, "epoch": 1,
                                   "loss": 1.0}, str(path))


def test_model_file_round_trip_and_checkpoints_hold_the_base(tmp_path):
    config = {"model": "two_tower", **SMALL, "recent_prior_days": 14.0}
    base = base_model()
    counts = np.arange(30, dtype=np.float32)
    wrapped = RecentPrior(base, counts, beta=0.25).eval()
    loaded, _ = load_model(save(wrapped, config, tmp_path / "model.pt"))
    assert isinstance(loaded, RecentPrior) and float(loaded.beta) == 0.25
    assert torch.equal(loaded.recent_counts, torch.from_numpy(counts))
    history = torch.from_numpy(random_histories(30, 6, batch=8))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(history), wrapped(history), rtol=0, atol=0)
    # A training checkpoint of the same run holds the base alone and loads as the base.
    ckpt, _ = load_model(save(base, config, tmp_path / "epoch-1.pt", fmt=checkpoint.CHECKPOINT_FORMAT))
    assert isinstance(ckpt, TwoTower)


def test_export_serves_the_prior(tmp_path):
    config = {"model": "two_tower", **SMALL, "recent_prior_days": 14.0}
    counts = np.zeros(30, dtype=np.float32)
    counts[[4, 17]] = (200, 900)  # items 5 and 18
    wrapped = RecentPrior(base_model(), counts, beta=50.0).eval()
    path = save(wrapped, config, tmp_path / "model.pt")
    run = python_job("models.export", "--model", path, "--out", str(tmp_path / "model.onnx"), "--top-k", "10")
    assert run.returncode == 0, run.stderr
    assert run.last["topk_match"] is True and run.last["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(run.last["onnx_path"], providers=["CPUExecutionProvider"])
    history = random_histories(30, 6, batch=16, seed=5)
    history[3] = [0, 0, 0, 0, 0, 18]  # the hottest item in the history: never returned, the next hottest leads
    scores, items = session.run(["scores", "items"], {"history": history})
    with torch.inference_mode():
        expected = torch.topk(mask_history(wrapped(torch.from_numpy(history)), torch.from_numpy(history)), 10)
    np.testing.assert_allclose(scores, expected.values.numpy(), atol=1e-4)
    np.testing.assert_array_equal(items, expected.indices.numpy() + 1)
    has_18, has_5 = (history == 18).any(axis=1), (history == 5).any(axis=1)
    rows = ~(has_18 & has_5)  # a row holding both hot items is led by the base's order
    np.testing.assert_array_equal(items[rows, 0], np.where(has_18, 5, 18)[rows])
    assert rows.sum() >= 10


T0 = 1_700_000_000
VALID_START, TEST_START = T0 + 100 * DAY, T0 + 120 * DAY
HOT, COLD_TARGETS = np.arange(11, 16), np.arange(21, 31)


def write_split_dataset(path, valid_items_hot: bool, protocol=None):
    """60 users with old train history on items 1..10; 20 other users make items 11..15 popular in the 10 days
    before the valid window; each of the 60 then has one valid item: a hot one (the prior helps) or one of 21..30,
    which nobody touched recently (the prior only pushes irrelevant items up)."""
    rng = np.random.default_rng(0)
    rows = []  # (user, item, ts)
    for u in range(60):
        for i in rng.choice(np.arange(1, 11), 5, replace=False):
            rows.append((u, i, T0 + int(rng.integers(0, 50 * DAY))))
        target = rng.choice(HOT if valid_items_hot else COLD_TARGETS)
        rows.append((u, target, VALID_START + int(rng.integers(0, 20 * DAY))))
    for u in range(60, 80):
        for i in rng.choice(HOT, 3, replace=False):
            rows.append((u, i, VALID_START - int(rng.integers(1, 10 * DAY))))
    for u in range(80, 90):  # the test window
        rows.append((u, int(rng.integers(1, 31)), TEST_START + int(rng.integers(0, DAY))))
    data = np.array(rows, dtype=np.int64)
    split = np.where(data[:, 2] < VALID_START, "train", np.where(data[:, 2] < TEST_START, "valid", "test"))
    path.mkdir(parents=True)
    counts = {"users": 90, "items": 30}
    for name in ("train", "valid", "test"):
        part = data[split == name]
        part = part[np.lexsort((part[:, 1], part[:, 0], part[:, 2]))]
        pq.write_table(pa.table({"user_idx": pa.array(part[:, 0], pa.int32()),
                                 "item_idx": pa.array(part[:, 1], pa.int32()),
                                 "ts": pa.array(part[:, 2], pa.int64()),
                                 "rating": pa.array(np.full(len(part), np.nan), pa.float32())}),
                       path / f"{name}.parquet")
        counts[name] = int(len(part))
    manifest = {"counts": counts, "split": {"validStart": VALID_START, "testStart": TEST_START}}
    if protocol:
        manifest["protocol"] = {"name": protocol}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def prior_config(**extra):
    return TrainConfig.from_dict({"model": "two_tower", **SMALL, "recent_prior_days": 14.0, **extra})


def test_beta_is_zero_when_recent_popularity_does_not_help(tmp_path):
    data = write_split_dataset(tmp_path / "d", valid_items_hot=False)
    model, info = fit_recent_prior(base_model(), prior_config(), str(data))
    grid = {g["beta"]: g["ndcg@10"] for g in info["grid"]}
    assert info["beta"] == 0.0 and float(model.beta) == 0.0 and info["n_valid_users"] == 60
    assert sorted(grid) == sorted(DEFAULT_BETAS)
    assert grid[100.0] < grid[0.0] == info["valid_ndcg@10"] == info["base_valid_ndcg@10"]  # the prior hurt


def test_beta_is_chosen_when_it_helps_and_counts_come_from_the_window_before_test(tmp_path):
    data = write_split_dataset(tmp_path / "d", valid_items_hot=True)
    config = prior_config(recent_prior_betas=[0.5, 5.0, 50.0])
    model, info = fit_recent_prior(base_model(), config, str(data))
    assert info["beta"] in (0.5, 5.0, 50.0) and float(model.beta) == info["beta"]
    assert [g["beta"] for g in info["grid"]] == [0.0, 0.5, 5.0, 50.0]
    assert info["valid_ndcg@10"] > info["base_valid_ndcg@10"] + 0.2
    assert info["selection_window"] == [VALID_START - 14 * DAY, VALID_START]
    assert info["window"] == [TEST_START - 14 * DAY, TEST_START]
    # Shipped counts: train+valid rows in [testStart - 14 days, testStart): here the valid rows of its last 14 days.
    manifest = read_manifest(str(data))
    rows = [read_split(str(data), s, manifest) for s in ("train", "valid")]
    item = np.concatenate([r.item for r in rows])
    ts = np.concatenate([r.ts for r in rows])
    inside = (ts >= TEST_START - 14 * DAY) & (ts < TEST_START)
    expected = np.bincount(item[inside], minlength=31)[1:]
    assert expected.sum() > 0 and info["window_interactions"] == expected.sum()
    np.testing.assert_array_equal(model.recent_counts.numpy(), expected)


def test_window_ends_per_protocol(tmp_path):
    for protocol in (None, "loo"):
        data = write_split_dataset(tmp_path / str(protocol), valid_items_hot=True, protocol=protocol)
        manifest = read_manifest(str(data))
        train_rows, valid_rows = (read_split(str(data), s, manifest) for s in ("train", "valid"))
        ends = window_ends(str(data), train_rows, valid_rows)
        if protocol is None:  # the time split: the manifest's boundaries
            assert ends == (VALID_START, TEST_START)
        else:  # per-user protocols: the last train ts + 1 s, the last train+valid ts + 1 s
            assert ends == (train_rows.ts.max() + 1, max(train_rows.ts.max(), valid_rows.ts.max()) + 1)


@pytest.mark.parametrize("config", [
    {**TINY_CONFIG, "epochs": 1},
    {"model": "mf", "epochs": 2, "embedding_dim": 8, "history_len": 16, "als_reg": 1.0, "als_alpha": 10.0,
     "log_every_seconds": 0.0},
], ids=["generic loop", "fit hook"])
def test_train_wraps_model_pt(config, dataset, tmp_path):
    config = {**config, "recent_prior_days": 14.0}
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path), "--config-json",
                     json.dumps(config))
    assert run.returncode == 0, run.stderr
    prior = run.last["recent_prior"]
    assert prior["beta"] in DEFAULT_BETAS and prior["days"] == 14.0 and prior["n_valid_users"] > 0
    assert prior["valid_ndcg@10"] >= prior["base_valid_ndcg@10"]
    model, meta = load_model(run.last["model_path"])
    assert isinstance(model, RecentPrior) and float(model.beta) == pytest.approx(prior["beta"])
    assert model.recent_counts.sum() == prior["window_interactions"] > 0
    assert meta["config"]["recent_prior_days"] == 14.0
    last = sorted((tmp_path / "checkpoints").glob("epoch-*.pt"))[-1]
    assert not isinstance(load_model(str(last))[0], RecentPrior)
    # Off by default: no field, no wrapper.
    off = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path / "off"),
                     "--config-json", json.dumps({k: v for k, v in config.items() if k != "recent_prior_days"}))
    assert off.returncode == 0 and "recent_prior" not in off.last
    assert not isinstance(load_model(off.last["model_path"])[0], RecentPrior)
