"""What an approximate-nearest-neighbour (HNSW) index of a version is built from, written by models/export.py beside
the exact top-K graph when the config asks for it. The exact graph stays the version's artefact and its fallback; the
index (built and checked by the export activity, activities/export.ts) only attaches to it.

When: config `retrieval` = "hnsw", or "auto" (the default) and n_items >= `ann_min_items`; single-stage retrieval
families only (those with user_vectors / item_vectors: not the cascade). Next to --out (its name without .onnx):
  O/model.user.onnx    the retrieval graph's inputs (history, and timestamps/query_time for `uses_time` families)
                       -> user float32 [batch, d]: the user tower alone, so scores = user @ items^T = the exact
                       graph's scores before its history mask and TopK. Parity-checked against PyTorch like the
                       main graph (max |ONNX - PyTorch| over the vector's elements <= --tolerance), atomically renamed.
  O/model.items.f32    raw little-endian float32, row-major [n_items, d]: row j is item j + 1 (item_vectors()).
  O/model.queries.f32  raw little-endian float32 [1000, d]: the user graph's vectors of 1000 random verification
                       histories (models/export.py's random_histories, seed 1): the queries the index's recall@10
                       against exact search is measured on before it may serve.
The result line then has "ann":{"user_graph":abs,"items":abs,"queries":abs,"dims":d,"n_items":n,"n_queries":1000,
"max_abs_diff":x}. The three files are written under temporary names and renamed only once all three are complete and
the user graph passed its check, so a failed export leaves none of them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.config import TrainConfig
from models.export import (EXPORTER, OPSET, TIME_INPUT_NAMES, ExportVerificationError, example_inputs,
                           input_names)

USER_OUTPUT = "user"
N_QUERIES = 1000
QUERY_SEED = 1  # not the parity set's seed 0: the index is checked on histories the graph was not compared on


class UserTower(nn.Module):
    """history -> the user vector (no item matrix, no mask, no TopK)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.model.user_vectors(history)


class UserTowerWithTime(UserTower):
    """The same for `uses_time` families: (history, timestamps ms, query_time ms) -> the user vector."""

    def forward(self, history: torch.Tensor, timestamps: torch.Tensor,  # type: ignore[override]
                query_time: torch.Tensor) -> torch.Tensor:
        return self.model.user_vectors(history, timestamps, query_time)


def ann_applies(model: nn.Module, config: TrainConfig) -> bool:
    """Whether the export writes the HNSW index's inputs for this model and config."""
    if not (hasattr(model, "user_vectors") and hasattr(model, "item_vectors")) or config.retrieval == "exact":
        return False
    return config.retrieval == "hnsw" or model.n_items >= config.ann_min_items


def ann_paths(out: str) -> dict[str, str]:
    """The files beside the exact graph `out` (absolute)."""
    base = os.path.abspath(out)
    base = base[: -len(".onnx")] if base.endswith(".onnx") else base
    return {"user_graph": f"{base}.user.onnx", "items": f"{base}.items.f32", "queries": f"{base}.queries.f32"}


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _write_f32(path: str, matrix: np.ndarray) -> None:
    np.ascontiguousarray(matrix, dtype="<f4").tofile(path)


def export_ann(model: nn.Module, family: str, out: str, tolerance: float) -> dict[str, Any]:
    """Writes the user graph, the item vectors and the check's queries next to `out`; returns the result's `ann`."""
    names = input_names(model)
    paths = ann_paths(out)
    tmp = {key: f"{p}.tmp-{os.getpid()}" for key, p in paths.items()}
    tmp["user_graph"] += ".onnx"  # onnx.save / the exporter want the extension
    module = (UserTowerWithTime if names == TIME_INPUT_NAMES else UserTower)(model).eval()
    try:
        example = tuple(torch.from_numpy(v) for v in example_inputs(model, batch=4).values())
        batch = torch.export.Dim("batch")
        torch.onnx.export(
            module, example, tmp["user_graph"], dynamo=True, opset_version=OPSET, input_names=list(names),
            output_names=[USER_OUTPUT], dynamic_shapes=tuple({0: batch} for _ in names), external_data=False,
        )
        with torch.no_grad():
            items = model.item_vectors().detach().float().numpy()
        dims = int(items.shape[1])
        proto = onnx.load(tmp["user_graph"])
        onnx.helper.set_model_props(proto, {
            "recsys.family": family, "recsys.n_items": str(model.n_items),
            "recsys.history_len": str(model.history_len), "recsys.dims": str(dims),
            "recsys.inputs": ",".join(names), "recsys.output": f"{USER_OUTPUT}: float32 [batch, {dims}]",
        })
        onnx.save(proto, tmp["user_graph"])
        onnx.checker.check_model(tmp["user_graph"], full_check=True)
        session = _session(tmp["user_graph"])

        feed = example_inputs(model)  # the main graph's parity set: an empty and a full history among them
        with torch.inference_mode():
            reference = module(*(torch.from_numpy(v) for v in feed.values())).numpy()
        (user,) = session.run([USER_OUTPUT], feed)
        max_abs_diff = float(np.abs(user - reference).max())
        if not (user.shape == reference.shape and max_abs_diff <= tolerance):
            raise ExportVerificationError(
                f"user graph vs PyTorch: shape {user.shape} vs {reference.shape}, max_abs_diff={max_abs_diff:.3g} "
                f"(tolerance {tolerance})"
            )
        if items.shape != (model.n_items, user.shape[1]):
            raise ExportVerificationError(f"item vectors have shape {items.shape}, expected ({model.n_items}, "
                                          f"{user.shape[1]}): the user and item vectors must share their dimension")
        (queries,) = session.run([USER_OUTPUT], example_inputs(model, batch=N_QUERIES, seed=QUERY_SEED))
        if not (np.isfinite(items).all() and np.isfinite(queries).all()):
            raise ExportVerificationError("item or query vectors are not all finite: no index can be built on them")
        _write_f32(tmp["items"], items)
        _write_f32(tmp["queries"], queries)
        for key, path in paths.items():
            os.replace(tmp[key], path)
    finally:
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
    return {**paths, "dims": dims, "n_items": model.n_items, "n_queries": int(queries.shape[0]),
            "max_abs_diff": max_abs_diff, "exporter": EXPORTER}
