"""Export of the `cascade` family (models/cascade.py): one ONNX graph per stage, each verified against PyTorch.
models/export.py hands a cascade model here; the command line is the same:

    OMP_NUM_THREADS=1 python -m models.export --model O/model.pt --out O/model.onnx [--top-k K] [--tolerance 1e-4]

writes, next to --out (its name without .onnx, plus .<stage>.onnx):
  O/model.recall.onnx  history int64 [batch, L] -> scores float32 [batch, N], items int64 [batch, N]
                       (the recall stage's top N, best first; 1-based items; the history's items are masked)
  O/model.rank.onnx    history int64 [batch, L], candidates int64 [batch, C] -> scores float32 [batch, C]
                       (DIN: one logit per candidate, in the candidates' order, not sorted; C dynamic)
  O/model.rerank.onnx  history, candidates, rank_scores float32 [batch, C] -> scores float32 [batch, C]
                       (RankNet, with the diversity term when diversity_weight > 0; same order, not sorted)
Serving composes them: recall -> its N items -> rank -> sort, top M -> re-rank with their rank scores -> sort, top k.
That composition is the model's forward (tests/models/test_cascade.py checks it on the graphs).
N = recall_n and M = rerank_m (each capped at what the catalogue allows), K = min(--top-k, M): the final list is the
re-ranked M, so --top-k larger than M gives M.

Each graph is written under a temporary name, checked (onnx.checker, full_check) and compared with PyTorch on random
histories (including an empty and a full one) and random candidate sets of several sizes; only when all three pass
are they renamed into place, so a failed export leaves no stage graph. Metadata props: recsys.family = cascade,
recsys.stage, recsys.n_items, recsys.history_len, recsys.top_k (the stage's), recsys.inputs (comma-separated).

stdout: export.py's result line with `onnx_path` = the recall graph, `top_k` = K, `inputs`/`outputs` = the recall
graph's, `max_abs_diff` = the largest of the stages', plus "kind":"cascade" and
  "stages":[{"name":"recall","path":abs,"top_k":N,"inputs":[...],"outputs":[...],"max_abs_diff":d},
            {"name":"rank",...,"top_k":M,...},{"name":"rerank",...,"top_k":K,...}]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.export import EXPORTER, OPSET, ExportVerificationError, describe, random_histories


class RecallGraph(nn.Module):
    """The recall stage's top N with its item vectors precomputed into a constant (as models/export.py does)."""

    def __init__(self, cascade: nn.Module):
        super().__init__()
        self.cascade = cascade
        with torch.no_grad():
            self.register_buffer("item_vectors", cascade.recall.item_vectors().contiguous())

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cascade.recall_topk(history, self.item_vectors)


class RankGraph(nn.Module):
    """DIN with the recall stage's score as its prior: the graph holds the recall stage's user tower and its item
    vectors, precomputed into a constant (as models/export.py does for retrieval)."""

    def __init__(self, cascade: nn.Module):
        super().__init__()
        self.cascade = cascade
        with torch.no_grad():
            self.register_buffer("item_vectors", cascade.recall.item_vectors().contiguous())

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.cascade.rank(history, candidates, self.item_vectors)


class RerankGraph(nn.Module):
    def __init__(self, cascade: nn.Module):
        super().__init__()
        self.reranker = cascade.reranker

    def forward(self, history: torch.Tensor, candidates: torch.Tensor, rank_scores: torch.Tensor) -> torch.Tensor:
        return self.reranker(history, candidates, rank_scores)


@dataclass(frozen=True)
class Stage:
    name: str
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    top_k: int  # how many of its outputs the next step keeps
    candidate_sizes: tuple[int, ...] = ()  # C values to verify with (what serving sends, and tiny ones)


def stage_inputs(stage: Stage, history: np.ndarray, n_items: int, n_candidates: int, seed: int) -> dict[str, Any]:
    """Inputs of one stage graph: the histories, and for rank/re-rank distinct random candidates per row (and
    random rank scores)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {"history": history}
    if "candidates" in stage.inputs:
        feeds["candidates"] = np.stack([rng.choice(n_items, n_candidates, replace=False) + 1 for _ in history])
    if "rank_scores" in stage.inputs:
        feeds["rank_scores"] = rng.normal(0, 3, size=(len(history), n_candidates)).astype(np.float32)
    return feeds


def verify_stage(path: str, stage: Stage, n_items: int, history_len: int, tolerance: float) -> tuple[float, bool]:
    """(max |ONNX - PyTorch| over every output score, whether the recall stage's items match up to ties)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    history = random_histories(n_items, history_len)
    max_abs_diff, items_match = 0.0, True
    for i, size in enumerate(sorted({min(s, n_items) for s in stage.candidate_sizes or (0,)})):
        feeds = stage_inputs(stage, history, n_items, size, seed=i)
        with torch.inference_mode():
            ref = stage.module(*(torch.from_numpy(feeds[name]) for name in stage.inputs))
        ref = [t.numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
        got = session.run(list(stage.outputs), feeds)
        max_abs_diff = max(max_abs_diff, float(np.abs(got[0] - ref[0]).max()))
        if stage.name == "recall":  # same items at every rank, except where two items tie within tolerance
            ref_scores, ref_items, items = ref[0], ref[1], got[1]
            with torch.inference_mode():
                full = stage.module.cascade.recall_scores(torch.from_numpy(history), stage.module.item_vectors).numpy()
            at_items = np.take_along_axis(full, np.clip(items - 1, 0, n_items - 1), axis=1)
            in_range = bool(((items >= 1) & (items <= n_items)).all())
            items_match = in_range and bool(((items == ref_items) | (np.abs(at_items - ref_scores) <= tolerance)).all())
    return max_abs_diff, items_match


def export_stage(stage: Stage, path: str, meta: dict[str, Any], n_items: int, history_len: int) -> onnx.ModelProto:
    history = random_histories(n_items, history_len, batch=4)
    feeds = stage_inputs(stage, history, n_items, min(5, n_items), seed=0)
    batch, candidates = torch.export.Dim("batch"), torch.export.Dim("candidates")
    dynamic = [{0: batch} if name == "history" else {0: batch, 1: candidates} for name in stage.inputs]
    torch.onnx.export(
        stage.module, tuple(torch.from_numpy(feeds[name]) for name in stage.inputs), path, dynamo=True,
        opset_version=OPSET, input_names=list(stage.inputs), output_names=list(stage.outputs),
        dynamic_shapes=tuple(dynamic), external_data=False,
    )
    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, {
        "recsys.family": meta["family"], "recsys.stage": stage.name, "recsys.n_items": str(n_items),
        "recsys.history_len": str(history_len), "recsys.top_k": str(stage.top_k),
        "recsys.inputs": ",".join(stage.inputs),
        "recsys.item_index": "1-based item_idx; 0 is padding in the input and never returned",
    })
    onnx.save(proto, path)
    onnx.checker.check_model(path, full_check=True)
    return proto


def stage_paths(out: str) -> Callable[[str], str]:
    root = out[: -len(".onnx")] if out.endswith(".onnx") else out
    return lambda name: f"{root}.{name}.onnx"


def export_cascade(model: nn.Module, meta: dict[str, Any], out: str, top_k: int, tolerance: float) -> dict[str, Any]:
    """Write and verify the three stage graphs (module docstring); returns the result line's fields."""
    model.eval()
    n_items, history_len = model.n_items, model.history_len
    k = min(top_k, model.rerank_m)
    stages = [
        Stage("recall", RecallGraph(model).eval(), ("history",), ("scores", "items"), model.recall_n),
        Stage("rank", RankGraph(model).eval(), ("history", "candidates"), ("scores",), model.rerank_m,
              (1, 2, model.recall_n)),
        Stage("rerank", RerankGraph(model).eval(), ("history", "candidates", "rank_scores"), ("scores",), k,
              (1, 2, model.rerank_m)),
    ]
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    path_of = stage_paths(out)
    tmps = {s.name: f"{path_of(s.name)}.tmp-{os.getpid()}.onnx" for s in stages}
    described, protos = [], []
    try:
        for stage in stages:
            proto = export_stage(stage, tmps[stage.name], meta, n_items, history_len)
            max_abs_diff, items_match = verify_stage(tmps[stage.name], stage, n_items, history_len, tolerance)
            if not (max_abs_diff <= tolerance and items_match):
                raise ExportVerificationError(
                    f"{stage.name} stage, ONNX vs PyTorch: max_abs_diff={max_abs_diff:.3g} (tolerance {tolerance}), "
                    f"topk_match={items_match}"
                )
            described.append({"name": stage.name, "path": path_of(stage.name), "top_k": stage.top_k,
                              "inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output),
                              "max_abs_diff": max_abs_diff})
            protos.append(proto)
        for stage in stages:
            os.replace(tmps[stage.name], path_of(stage.name))
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    return {
        "onnx_path": described[0]["path"], "max_abs_diff": max(d["max_abs_diff"] for d in described),
        "tolerance": tolerance, "topk_match": True,
        "opset": next(o.version for o in protos[0].opset_import if o.domain in ("", "ai.onnx")),
        "top_k": k, "history_len": history_len, "n_items": n_items,
        "inputs": described[0]["inputs"], "outputs": described[0]["outputs"], "exporter": EXPORTER,
        "kind": "cascade", "stages": described,
    }
