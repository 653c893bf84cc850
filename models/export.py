"""Export a trained model to ONE ONNX graph that serves top-K retrieval, then verify it with onnxruntime.

    OMP_NUM_THREADS=1 python -m models.export --model O/model.pt --out O/model.onnx [--top-k 100] [--tolerance 1e-4]

Graph:  history int64 [batch, history_len] (item indices, 0 = padding, left-padded, most recent last)
          -> user tower -> scores = user @ item_matrix (item tower precomputed into a constant) -> TopK
        outputs  scores float32 [batch, K], items int64 [batch, K]   (K = min(top_k, n_items))
Returned items are 1-based item_idx values. The padding index has no column in the score matrix, so it can never be
returned. The model's metadata_props carry recsys.family, recsys.n_items, recsys.history_len, recsys.top_k.

Exporter: torch.onnx.export(dynamo=True) (the default in torch 2.15; it uses onnxscript), opset 20. The file is
written next to --out under a temporary name, checked (onnx.checker, full_check), compared with PyTorch on random
histories including an empty one, and only then renamed to --out: a failed export leaves no artefact.

stdout: {"event":"result","onnx_path":"/abs/model.onnx","max_abs_diff":d,"tolerance":t,"topk_match":true,"opset":20,
         "top_k":K,"history_len":L,"n_items":I,"inputs":[{"name":"history","dtype":"int64","shape":["batch",L]}],
         "outputs":[{"name":"scores",...},{"name":"items",...}],"exporter":"torch.onnx.export(dynamo=True)"}
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.model_file import load_model
from models.jsonl import ArgumentParser, UsageError, emit, run

OPSET = 20  # pinned: the graph must not change with the exporter's default (onnxruntime-node serves it)
INPUT_NAME, OUTPUT_NAMES = "history", ("scores", "items")
EXPORTER = "torch.onnx.export(dynamo=True)"


class ExportVerificationError(RuntimeError):
    """The ONNX graph does not reproduce the PyTorch model."""


class TopKRetrieval(nn.Module):
    """history -> user vectors -> scores against the frozen item matrix -> (top-K scores, top-K item indices)."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model = model
        self.k = k
        with torch.no_grad():
            # (d, n_items), stored pre-transposed so the graph is a single MatMul.
            self.register_buffer("item_matrix", model.item_vectors().T.contiguous())

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.model.user_vectors(history) @ self.item_matrix
        top_scores, top_columns = torch.topk(scores, self.k, dim=1)
        return top_scores, top_columns + 1  # column j is item j + 1


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.export", description="Export to ONNX and verify (JSON lines on stdout).")
    p.add_argument("--model", required=True, help="model.pt (or an epoch checkpoint)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs score difference vs PyTorch")
    args = p.parse_args(argv)
    if args.top_k < 1 or not args.tolerance >= 0:
        raise UsageError("--top-k must be >= 1 and --tolerance >= 0")
    return args


def random_histories(n_items: int, history_len: int, batch: int = 64, seed: int = 0) -> np.ndarray:
    """Left-padded histories of every length from 0 (row 0: the empty history) to history_len (row 1: full)."""
    rng = np.random.default_rng(seed)
    history = rng.integers(1, n_items + 1, size=(batch, history_len), dtype=np.int64)
    lengths = rng.integers(0, history_len + 1, size=batch)
    lengths[:2] = (0, history_len)
    history[np.arange(history_len)[None, :] < (history_len - lengths)[:, None]] = 0
    return history


def verify(path: str, module: TopKRetrieval, tolerance: float) -> tuple[float, bool]:
    model = module.model
    history = random_histories(model.n_items, model.history_len)
    with torch.inference_mode():
        full = model(torch.from_numpy(history)).numpy()  # all item scores, the PyTorch reference
        ref_scores, ref_items = (t.numpy() for t in module(torch.from_numpy(history)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    scores, items = session.run(list(OUTPUT_NAMES), {INPUT_NAME: history})
    max_abs_diff = float(np.abs(scores - ref_scores).max())
    in_range = bool(((items >= 1) & (items <= model.n_items)).all())
    # Same items at every rank, except where two items tie within tolerance: then the order between them is free.
    onnx_items_ref_score = np.take_along_axis(full, np.clip(items - 1, 0, model.n_items - 1), axis=1)
    tie = np.abs(onnx_items_ref_score - ref_scores) <= tolerance
    topk_match = in_range and bool(((items == ref_items) | tie).all())
    return max_abs_diff, topk_match


def describe(values: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": v.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
        }
        for v in values
    ]


def export(args: Any) -> dict[str, Any]:
    model, meta = load_model(args.model)
    k = min(args.top_k, model.n_items)
    module = TopKRetrieval(model, k).eval()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}.onnx"
    try:
        example = torch.from_numpy(random_histories(model.n_items, model.history_len, batch=4))
        torch.onnx.export(
            module, (example,), tmp, dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,  # one self-contained file (fine below 2 GB: 100k items x 64 floats is 25 MB)
        )
        proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, {
            "recsys.family": meta["family"], "recsys.n_items": str(model.n_items),
            "recsys.history_len": str(model.history_len), "recsys.top_k": str(k),
            "recsys.item_index": "1-based item_idx; 0 is padding in the input and never returned",
        })
        onnx.save(proto, tmp)
        onnx.checker.check_model(tmp, full_check=True)
        max_abs_diff, topk_match = verify(tmp, module, args.tolerance)
        if not (max_abs_diff <= args.tolerance and topk_match):
            raise ExportVerificationError(
                f"ONNX vs PyTorch: max_abs_diff={max_abs_diff:.3g} (tolerance {args.tolerance}), "
                f"topk_match={topk_match}"
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {
        "onnx_path": out, "max_abs_diff": max_abs_diff, "tolerance": args.tolerance, "topk_match": topk_match,
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "top_k": k, "history_len": model.history_len, "n_items": model.n_items,
        "inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output), "exporter": EXPORTER,
    }


def main(argv: Sequence[str] | None = None) -> None:
    emit("result", **export(parse_args(argv)))


if __name__ == "__main__":
    run(main)
