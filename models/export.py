"""Export a trained model to ONE ONNX graph that serves top-K retrieval, then verify it with onnxruntime.

    OMP_NUM_THREADS=1 python -m models.export --model O/model.pt --out O/model.onnx [--top-k 100] [--tolerance 1e-4]

Graph:  history int64 [batch, history_len] (item indices, 0 = padding, left-padded, most recent last)
          -> user tower -> scores = user @ item_matrix (item tower precomputed into a constant)
          -> the history window's own items masked (models/masking.py: serving never returns them) -> TopK
        outputs  scores float32 [batch, K], items int64 [batch, K]   (K = min(top_k, n_items))
Returned items are 1-based item_idx values. The padding index has no column in the score matrix, so it can never be
returned. The model's metadata_props carry recsys.family, recsys.n_items, recsys.history_len, recsys.top_k and
recsys.inputs (the input names, comma-separated).
Families with `uses_time` (ode_rnn, gru: models/continuous_time.py) take two more inputs: timestamps int64
[batch, history_len] (epoch ms of each history item, 0 at padding) and query_time int64 [batch] (epoch ms of the
request); recsys.inputs = "history,timestamps,query_time". `gru` ignores both but keeps them, so serving feeds both
families alike. Their parity set adds increasing timestamps with gaps from a second to 115 days (past int64 2^31 ms)
and a query before the last event.

Exporter: torch.onnx.export(dynamo=True) (the default in torch 2.15; it uses onnxscript), opset 20. The file is
written next to --out under a temporary name, checked (onnx.checker, full_check), compared with PyTorch on random
histories including an empty one, and only then renamed to --out: a failed export leaves no artefact.

stdout: {"event":"result","onnx_path":"/abs/model.onnx","max_abs_diff":d,"tolerance":t,"topk_match":true,"opset":20,
         "top_k":K,"history_len":L,"n_items":I,"inputs":[{"name":"history","dtype":"int64","shape":["batch",L]}],
         "outputs":[{"name":"scores",...},{"name":"items",...}],"exporter":"torch.onnx.export(dynamo=True)",
         "kind":"single"}
The `cascade` family is exported as one graph per stage by models/cascade_export.py: the same line with
"kind":"cascade" and "stages":[...] (see there).
HNSW retrieval (config `retrieval` "hnsw", or "auto" with n_items >= `ann_min_items`; single-stage families): the
user-tower graph, the item vectors and the index check's query vectors are also written next to --out
(O/model.user.onnx, O/model.items.f32, O/model.queries.f32; models/ann_export.py) and the line adds
"ann":{"user_graph":abs,"items":abs,"queries":abs,"dims":d,"n_items":I,...}. The exact graph is written all the same.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.config import TrainConfig
from models.masking import mask_history
from models.model_file import load_model
from models.jsonl import ArgumentParser, UsageError, emit, run

OPSET = 20  # pinned: the graph must not change with the exporter's default (onnxruntime-node serves it)
INPUT_NAME, OUTPUT_NAMES = "history", ("scores", "items")
TIME_INPUT_NAMES = (INPUT_NAME, "timestamps", "query_time")  # families with `uses_time` (models/continuous_time.py)
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
        scores = mask_history(self.model.user_vectors(history) @ self.item_matrix, history)
        top_scores, top_columns = torch.topk(scores, self.k, dim=1)
        return top_scores, top_columns + 1  # column j is item j + 1


class TopKRetrievalWithTime(TopKRetrieval):
    """The same for `uses_time` families: (history, timestamps ms, query_time ms) -> top-K."""

    def forward(self, history: torch.Tensor, timestamps: torch.Tensor,  # type: ignore[override]
                query_time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = mask_history(self.model.user_vectors(history, timestamps, query_time) @ self.item_matrix, history)
        top_scores, top_columns = torch.topk(scores, self.k, dim=1)
        return top_scores, top_columns + 1


def input_names(model: nn.Module) -> tuple[str, ...]:
    return TIME_INPUT_NAMES if getattr(model, "uses_time", False) else (INPUT_NAME,)


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


def random_times(history: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, query_time) in epoch ms for `random_histories`: increasing at the real positions with gaps from a
    second to months, 0 at padding; the query after the last event, except in row 2 (before it: a negative gap)."""
    rng = np.random.default_rng(seed + 1)
    gaps = np.exp(rng.uniform(np.log(1e3), np.log(1e10), size=history.shape)).astype(np.int64)
    timestamps = np.where(history > 0, 1_600_000_000_000 + np.cumsum(gaps, axis=1), 0).astype(np.int64)
    query_time = timestamps.max(axis=1) + np.exp(rng.uniform(0, np.log(1e10), size=len(history))).astype(np.int64)
    query_time[0] = 1_700_000_000_000  # the empty history (row 0) still gets a request time
    if len(history) > 2:
        query_time[2] = timestamps[2].max() - 3_600_000
    return timestamps, query_time.astype(np.int64)


def example_inputs(model: nn.Module, batch: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Random graph inputs by name (models/export.py's verification set; tests and benches reuse it)."""
    history = random_histories(model.n_items, model.history_len, batch=batch, seed=seed)
    if not getattr(model, "uses_time", False):
        return {INPUT_NAME: history}
    return dict(zip(TIME_INPUT_NAMES, (history, *random_times(history, seed))))


def verify(path: str, module: TopKRetrieval, tolerance: float) -> tuple[float, bool]:
    model = module.model
    feed = example_inputs(model)
    tensors = [torch.from_numpy(v) for v in feed.values()]
    with torch.inference_mode():
        # All item scores, the PyTorch reference, with the history window masked as the graph does.
        full = mask_history(model(*tensors), tensors[0]).numpy()
        ref_scores, ref_items = (t.numpy() for t in module(*tensors))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    scores, items = session.run(list(OUTPUT_NAMES), feed)
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
    if meta["family"] == "cascade":  # one graph per stage; the result adds kind "cascade" and the stages
        from models.cascade_export import export_cascade  # here: it imports this module

        return export_cascade(model, meta, args.out, args.top_k, args.tolerance)
    k = min(args.top_k, model.n_items)
    names = input_names(model)
    module = (TopKRetrievalWithTime if names == TIME_INPUT_NAMES else TopKRetrieval)(model, k).eval()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}.onnx"
    try:
        example = tuple(torch.from_numpy(v) for v in example_inputs(model, batch=4).values())
        batch = torch.export.Dim("batch")
        torch.onnx.export(
            module, example, tmp, dynamo=True, opset_version=OPSET, input_names=list(names),
            output_names=list(OUTPUT_NAMES), dynamic_shapes=tuple({0: batch} for _ in names),
            external_data=False,  # one self-contained file (fine below 2 GB: 100k items x 64 floats is 25 MB)
        )
        proto = onnx.load(tmp)
        onnx.helper.set_model_props(proto, {
            "recsys.family": meta["family"], "recsys.n_items": str(model.n_items),
            "recsys.history_len": str(model.history_len), "recsys.top_k": str(k),
            "recsys.item_index": "1-based item_idx; 0 is padding in the input and never returned",
            "recsys.inputs": ",".join(names),
        })
        onnx.save(proto, tmp)
        onnx.checker.check_model(tmp, full_check=True)
        max_abs_diff, topk_match = verify(tmp, module, args.tolerance)
        if not (max_abs_diff <= args.tolerance and topk_match):
            raise ExportVerificationError(
                f"ONNX vs PyTorch: max_abs_diff={max_abs_diff:.3g} (tolerance {args.tolerance}), "
                f"topk_match={topk_match}"
            )
        # The HNSW index's inputs (models/ann_export.py), before the graph is renamed: a failure leaves neither.
        from models.ann_export import ann_applies, export_ann  # here: it imports this module

        ann = (export_ann(model, meta["family"], out, args.tolerance)
               if ann_applies(model, TrainConfig.from_dict(meta["config"])) else None)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {
        "onnx_path": out, "max_abs_diff": max_abs_diff, "tolerance": args.tolerance, "topk_match": topk_match,
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "top_k": k, "history_len": model.history_len, "n_items": model.n_items,
        "inputs": describe(proto.graph.input), "outputs": describe(proto.graph.output), "exporter": EXPORTER,
        "kind": "single", **({"ann": ann} if ann else {}),
    }


def main(argv: Sequence[str] | None = None) -> None:
    emit("result", **export(parse_args(argv)))


if __name__ == "__main__":
    run(main)
