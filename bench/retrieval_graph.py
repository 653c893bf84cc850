"""The exact in-graph top-K of bench/retrieval.ts: user float32 [batch, d] -> MatMul with the item matrix (an
initializer, stored pre-transposed [d, n] as models/export.py stores it, so the graph is a single MatMul) -> TopK ->
scores float32 [batch, k] and items int64 [batch, k] (1-based: column j is item j + 1). The production graph's user
tower and history mask are left out: only the retrieval step is measured.

    ~/.cache/recsys/venv/bin/python bench/retrieval_graph.py ITEMS.f32 DIMS K OUT.onnx

ITEMS.f32: raw little-endian float32, row-major [n, DIMS]. Skipped when OUT.onnx is newer than ITEMS.f32 and this
script. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20  # models/export.py's
IR_VERSION = 10


def build(items_path: str, dims: int, k: int, out: str) -> None:
    items = np.fromfile(items_path, dtype="<f4")
    if items.size % dims:
        raise SystemExit(f"{items_path}: {items.size} floats is not a multiple of dims {dims}")
    n = items.size // dims
    matrix = numpy_helper.from_array(np.ascontiguousarray(items.reshape(n, dims).T), "item_matrix")
    nodes = [
        helper.make_node("MatMul", ["user", "item_matrix"], ["all_scores"]),
        helper.make_node("TopK", ["all_scores", "k"], ["scores", "columns"], axis=1, largest=1, sorted=1),
        helper.make_node("Add", ["columns", "one"], ["items"]),
    ]
    graph = helper.make_graph(
        nodes, "exact_top_k",
        [helper.make_tensor_value_info("user", TensorProto.FLOAT, ["batch", dims])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", k]),
         helper.make_tensor_value_info("items", TensorProto.INT64, ["batch", k])],
        [matrix, numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
         numpy_helper.from_array(np.array(1, dtype=np.int64), "one")],
    )
    # IR 10 (onnx 1.16+), the newest onnxruntime-node 1.30 reads; the installed onnx would write 14.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    tmp = f"{out}.tmp-{os.getpid()}"
    onnx.save(model, tmp)
    os.replace(tmp, out)


def main() -> None:
    items_path, dims, k, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # Rebuilt when the items or this script changed since.
    cached = os.path.exists(out) and os.path.getmtime(out) > max(os.path.getmtime(items_path), os.path.getmtime(__file__))
    if not cached:
        build(items_path, dims, k, out)
    print(json.dumps({"path": os.path.abspath(out), "bytes": os.path.getsize(out), "cached": cached}), flush=True)


if __name__ == "__main__":
    main()
