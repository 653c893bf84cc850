"""The cascade family (models/cascade.py, din.py, ranknet.py, cascade_export.py, stage_metrics.py): the stages' maths,
forward = the stage-by-stage composition, end-to-end training (single process and DDP), the stage graphs' ONNX
parity and the export/evaluate result lines."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import TINY_CONFIG, python_job, torchrun_job
from models.config import ConfigError, TrainConfig
from models.din import DIN
from models.export import random_histories
from models.model_file import load_model
from models.ranknet import RankNet, pairwise_loss

N, M, K = 20, 8, 5
CASCADE_CONFIG = {**TINY_CONFIG, "model": "cascade", "recall_model": "two_tower", "recall_n": N, "rerank_m": M,
                  "rank_epochs": 2, "rerank_epochs": 2, "rank_batch_size": 64, "rank_lr": 0.01,
                  "rank_history_len": 6, "rank_attention_dim": 8, "diversity_weight": 0.1}


@pytest.fixture(scope="module")
def cascade(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cascade")
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(out),
                     "--config-json", json.dumps(CASCADE_CONFIG))
    assert run.returncode == 0, run.stderr
    return out, run


@pytest.fixture(scope="module")
def exported(cascade, tmp_path_factory):
    out, _ = cascade
    path = tmp_path_factory.mktemp("cascade-export") / "model.onnx"
    run = python_job("models.export", "--model", str(out / "model.pt"), "--out", str(path), "--top-k", str(K),
                     timeout=240)
    assert run.returncode == 0, run.stderr
    return out / "model.pt", path, run.last


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- config ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"recall_model": "cascade"}, "recall_model"),
    ({"recall_model": "nope"}, "recall_model"),
    ({"recall_model": "ode_rnn"}, "recall_model"),  # its graph takes timestamps: not a recall stage
    ({"recall_model": "two_tower", "recall_n": 10, "rerank_m": 11}, "rerank_m"),
    ({"recall_model": "two_tower", "diversity_weight": -0.5}, "diversity_weight"),
    ({"recall_model": "two_tower", "rank_negatives": 0}, "rank_negatives"),
    ({"recall_model": "two_tower", "rank_lr": 0}, "rank_lr"),
])
def test_cascade_config_is_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"model": "cascade", **values})


def test_cascade_keys_do_not_constrain_other_families():
    assert TrainConfig.from_dict({"model": "two_tower", "recall_model": "nope"}).model == "two_tower"
    assert TrainConfig.from_dict({"model": "cascade"}).recall_model == "lightgcn"


# --- DIN and RankNet ------------------------------------------------------------------------------------------------


def test_din_activation_unit_is_the_mlp_of_the_concatenation():
    torch.manual_seed(0)
    din = DIN(30, 8, 16, 6, history_len=5)
    h, c = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    unit = din.attention
    pairs_h, pairs_c = h.unsqueeze(1).expand(2, 3, 5, 8), c.unsqueeze(2).expand(2, 3, 5, 8)
    naive = unit.out(unit.act(unit.first(torch.cat([pairs_h, pairs_c, pairs_h - pairs_c, pairs_h * pairs_c], -1))))
    torch.testing.assert_close(unit(h, c), naive.squeeze(-1))


def test_din_pools_without_normalisation_and_ignores_padding():
    torch.manual_seed(0)
    din = DIN(30, 8, 16, 6, history_len=6).eval()
    candidates = torch.tensor([[3, 7, 9]])
    a = din(torch.tensor([[0, 0, 0, 0, 4, 5]]), candidates)
    b = din(torch.tensor([[0, 0, 0, 0, 0, 4, 5]]), candidates)  # more padding: same scores
    torch.testing.assert_close(a, b)
    # Not a softmax: repeating the history changes the pooled vector's scale, so the scores move.
    c = din(torch.tensor([[0, 0, 4, 5, 4, 5]]), candidates)
    assert not torch.allclose(a, c)


def test_ranknet_pairwise_loss():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 2.0]])
    relevant = torch.tensor([[True, False, False], [False, False, False]])  # row 2 has no pair
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    assert pairwise_loss(scores, relevant).item() == pytest.approx(expected, rel=1e-6)
    assert pairwise_loss(scores, torch.zeros_like(relevant)).item() == 0.0


def test_untrained_ranknet_keeps_the_rank_order_and_diversity_pushes_near_duplicates_down():
    torch.manual_seed(0)
    net = RankNet(10, 4, 8, diversity_weight=0.0).eval()
    history, candidates = torch.tensor([[0, 1, 2]]), torch.tensor([[3, 4, 5, 6]])
    rank_scores = torch.tensor([[3.0, 2.9, 1.0, 0.0]])
    torch.testing.assert_close(net(history, candidates, rank_scores), rank_scores)
    vectors = torch.eye(10, 4) + 0.0
    vectors[3] = vectors[2]  # item 4 (row 3) is a copy of item 3 (row 2)
    net.set_similarity_vectors(vectors)
    net.diversity_weight = 0.5
    with torch.no_grad():
        scores = net(history, candidates, rank_scores)
    assert scores[0, 0] == 3.0  # the top candidate is never penalised
    assert scores[0, 1] == pytest.approx(2.4)  # 2.9 - 0.5 * cos 1 with the candidate above it
    assert scores[0, 1] < scores[0, 0] and torch.argsort(scores, descending=True)[0].tolist()[:2] == [0, 1]
    net.train()  # training scores the relevance alone: the term is not learned through
    torch.testing.assert_close(net(history, candidates, rank_scores), rank_scores)


# --- training, composition, evaluation ----------------------------------------------------------------------------


def test_training_runs_the_stages_in_order(cascade):
    out, run = cascade
    result = run.last
    assert result["config"]["model"] == "cascade" and (out / "model.pt").is_file()
    stages = [e["stage"] for e in run.of("progress")]
    assert stages == sorted(stages, key=["recall", "rank", "rerank"].index) and set(stages) == {"recall", "rank",
                                                                                               "rerank"}
    ends = [e["epoch"] for e in run.of("progress") if e["step"] == e["steps_per_epoch"]]
    assert ends == list(range(1, 2 + 2 + 2 + 1))  # recall 2, rank 2, re-rank 2: one monotonic epoch count
    assert all(np.isfinite(e["loss"]) for e in run.of("progress"))
    rank_losses = [e["loss"] for e in run.of("progress") if e["stage"] == "rank" and e["step"] == e["steps_per_epoch"]]
    assert rank_losses[-1] < np.log(1 + 7)  # below chance over the target + 7 negatives


def ordered_stages(model, history):
    """The stage-by-stage composition, as serving runs it: sort rank scores, top M, re-rank, sort."""
    with torch.inference_mode():
        _, items = model.recall_topk(history)
        rank_scores = model.rank(history, items)
        order = torch.argsort(rank_scores, dim=1, descending=True, stable=True)
        ranked, ranked_scores = items.gather(1, order), rank_scores.gather(1, order)
        rerank = model.reranker(history, ranked[:, :M], ranked_scores[:, :M])
        top = ranked[:, :M].gather(1, torch.argsort(rerank, dim=1, descending=True, stable=True))
    return items, ranked, torch.cat([top, ranked[:, M:]], dim=1)


def test_forward_order_is_the_composition_of_the_stages(cascade):
    out, _ = cascade
    model, _ = load_model(str(out / "model.pt"))
    history = torch.from_numpy(random_histories(model.n_items, model.history_len, batch=16, seed=3))
    items, ranked, final = ordered_stages(model, history)
    with torch.inference_mode():
        scores = model(history)
        stages = model.stage_rankings(history)
        recall = model.recall_scores(history)
    order = torch.argsort(scores, dim=1, descending=True, stable=True) + 1
    assert torch.equal(order[:, :N], final)
    # Past the candidates, the recall stage's order (items of the history window are masked and tie at the bottom).
    rest = recall.gather(1, order[:, N:] - 1)
    assert (rest[:, :-1] >= rest[:, 1:]).all()
    assert torch.equal(torch.argsort(stages["rank"], dim=1, descending=True, stable=True)[:, :N] + 1, ranked)
    assert torch.equal(torch.argsort(stages["recall"], dim=1, descending=True, stable=True)[:, :N] + 1, items)
    torch.testing.assert_close(stages["final"], scores)
    assert not (final.unsqueeze(2) == history.unsqueeze(1)).any()  # the history's items are never candidates


def test_evaluate_reports_per_stage_metrics(cascade, dataset, tmp_path):
    out, _ = cascade
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                     "--out", str(tmp_path / "eval.json"), "--bootstrap", "50")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    stages = report["stages"]
    assert stages["recall_n"] == N and stages["rerank_m"] == M
    assert stages["metric_names"] == [f"recall@{N}", f"recall@{M}", "ndcg@10"]
    every = stages["all"]["stages"]
    assert set(every) == {"recall", "rank", "final"} and stages["all"]["n_users"] == report["n_users"]
    # The final stage IS the model's ranking; the ranker only reorders the recall stage's N candidates.
    assert every["final"]["ndcg@10"]["point"] == pytest.approx(report["metrics"]["model"]["ndcg@10"])
    assert every["rank"][f"recall@{N}"]["point"] == pytest.approx(every["recall"][f"recall@{N}"]["point"])
    assert 0 < stages["warm"]["n_users"] < stages["all"]["n_users"]  # the dataset has cold test users
    diff = stages["all"]["final_vs_recall"]["ndcg@10"]
    assert diff["point"] == pytest.approx(every["final"]["ndcg@10"]["point"] - every["recall"]["ndcg@10"]["point"])


def test_single_model_reports_have_no_stages(trained, dataset, tmp_path):
    out, _ = trained
    run = python_job("models.evaluate", "--data-dir", str(dataset), "--model", str(out / "model.pt"),
                     "--out", str(tmp_path / "eval.json"), "--bootstrap", "20")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["stages"] is None


# --- export ---------------------------------------------------------------------------------------------------------


def test_export_result_line_matches_the_contract(exported):
    _, path, result = exported
    base = str(path)[: -len(".onnx")]
    assert result["kind"] == "cascade" and result["top_k"] == K
    assert result["onnx_path"] == f"{base}.recall.onnx" and not path.exists()
    assert [s["name"] for s in result["stages"]] == ["recall", "rank", "rerank"]
    assert [s["top_k"] for s in result["stages"]] == [N, M, K]
    for stage in result["stages"]:
        assert stage["path"] == f"{base}.{stage['name']}.onnx"
        assert stage["max_abs_diff"] <= result["tolerance"]
        props = {p.key: p.value for p in onnx.load(stage["path"]).metadata_props}
        assert props["recsys.family"] == "cascade" and props["recsys.stage"] == stage["name"]
        assert props["recsys.top_k"] == str(stage["top_k"])
    recall, rank, rerank = result["stages"]
    history = {"name": "history", "dtype": "int64", "shape": ["batch", 8]}
    assert recall["inputs"] == [history] and result["inputs"] == [history]
    assert recall["outputs"] == [{"name": "scores", "dtype": "float32", "shape": ["batch", N]},
                                 {"name": "items", "dtype": "int64", "shape": ["batch", N]}]
    candidates = {"name": "candidates", "dtype": "int64", "shape": ["batch", "candidates"]}
    scores = {"name": "scores", "dtype": "float32", "shape": ["batch", "candidates"]}
    assert rank["inputs"] == [history, candidates] and rank["outputs"] == [scores]
    assert rerank["inputs"] == [history, candidates,
                                {"name": "rank_scores", "dtype": "float32", "shape": ["batch", "candidates"]}]
    assert rerank["outputs"] == [scores]


@pytest.mark.parametrize("n_candidates", [1, 3, N])
def test_stage_graphs_match_pytorch_for_any_candidate_count(exported, n_candidates):
    model_path, path, result = exported
    model, _ = load_model(str(model_path))
    paths = {s["name"]: s["path"] for s in result["stages"]}
    history = random_histories(model.n_items, model.history_len, batch=7, seed=11)
    rng = np.random.default_rng(n_candidates)
    candidates = np.stack([rng.choice(model.n_items, n_candidates, replace=False) + 1 for _ in history])
    rank_scores = rng.normal(0, 2, size=candidates.shape).astype(np.float32)
    (rank,) = session(paths["rank"]).run(["scores"], {"history": history, "candidates": candidates})
    (rerank,) = session(paths["rerank"]).run(["scores"], {"history": history, "candidates": candidates,
                                                         "rank_scores": rank_scores})
    assert rank.shape == rerank.shape == (7, n_candidates)
    h, c = torch.from_numpy(history), torch.from_numpy(candidates)
    with torch.inference_mode():
        np.testing.assert_allclose(rank, model.rank(h, c).numpy(), atol=1e-4)
        np.testing.assert_allclose(rerank, model.reranker(h, c, torch.from_numpy(rank_scores)).numpy(), atol=1e-4)


def test_the_graphs_composed_as_serving_does_give_forwards_order(exported):
    model_path, _, result = exported
    model, _ = load_model(str(model_path))
    paths = {s["name"]: s["path"] for s in result["stages"]}
    history = random_histories(model.n_items, model.history_len, batch=9, seed=5)
    recall_scores, items = session(paths["recall"]).run(["scores", "items"], {"history": history})
    assert items.shape == recall_scores.shape == (9, N) and (np.diff(recall_scores, axis=1) <= 0).all()
    (rank,) = session(paths["rank"]).run(["scores"], {"history": history, "candidates": items})
    order = np.argsort(-rank, axis=1, kind="stable")
    top_m, top_m_scores = np.take_along_axis(items, order, 1)[:, :M], np.take_along_axis(rank, order, 1)[:, :M]
    (rerank,) = session(paths["rerank"]).run(["scores"], {"history": history, "candidates": top_m,
                                                         "rank_scores": top_m_scores})
    final = np.take_along_axis(top_m, np.argsort(-rerank, axis=1, kind="stable"), 1)[:, :K]
    with torch.inference_mode():
        forward = model(torch.from_numpy(history)).numpy()
    np.testing.assert_array_equal(final, np.argsort(-forward, axis=1, kind="stable")[:, :K] + 1)


# --- training variants ----------------------------------------------------------------------------------------------


def test_lightgcn_recall_trains_through_its_own_fit(dataset, tmp_path):
    config = {**CASCADE_CONFIG, "recall_model": "lightgcn", "epochs": 2, "batch_size": 256, "rank_epochs": 1,
              "rerank_epochs": 1, "diversity_weight": 0.0}
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--config-json", json.dumps(config))
    assert run.returncode == 0, run.stderr
    assert {e["stage"] for e in run.of("progress")} == {"recall", "rank", "rerank"}
    model, meta = load_model(str(tmp_path / "model.pt"))
    assert meta["family"] == "cascade" and type(model.recall).__name__ == "LightGCN"


def test_ddp_training_matches_the_contract(dataset, tmp_path):
    config = {**CASCADE_CONFIG, "epochs": 1, "rank_epochs": 1, "rerank_epochs": 1}
    run = torchrun_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                       "--config-json", json.dumps(config), timeout=240)
    assert run.returncode == 0, run.stderr
    assert run.last["world_size"] == 2
    assert [e["stage"] for e in run.of("progress") if e["step"] == e["steps_per_epoch"]] == ["recall", "rank",
                                                                                              "rerank"]
    model, _ = load_model(str(tmp_path / "model.pt"))
    history = torch.from_numpy(random_histories(model.n_items, model.history_len, batch=4))
    with torch.inference_mode():
        assert torch.isfinite(model(history)).all()
