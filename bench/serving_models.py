"""ONNX graphs for bench/serving.ts: untrained two-tower models of the right shapes, exported exactly as
models/export.py exports trained ones (same module, opset, names), plus an int8 copy by onnxruntime's dynamic
quantisation. Only serving speed is measured, so random weights are as good as trained ones.

    OMP_NUM_THREADS=1 PYTHONPATH=. ~/.cache/recsys/venv/bin/python bench/serving_models.py OUT_DIR N_ITEMS...

Writes OUT_DIR/two_tower-<n>-{fp32,int8}.onnx (skipped when present: the graphs depend only on n and the seed) and
prints one JSON line per file.
"""

from __future__ import annotations

import json
import os
import sys

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from models.config import TrainConfig
from models.export import INPUT_NAME, OPSET, OUTPUT_NAMES, TopKRetrieval, random_histories
from models.two_tower import TwoTower

TOP_K = 100


def build(out_dir: str, n_items: int) -> None:
    fp32 = os.path.join(out_dir, f"two_tower-{n_items}-fp32.onnx")
    int8 = os.path.join(out_dir, f"two_tower-{n_items}-int8.onnx")
    if not os.path.exists(fp32):
        torch.manual_seed(n_items)
        c = TrainConfig()
        model = TwoTower(n_items, c.embedding_dim, c.hidden_dim, c.history_len).eval()
        module = TopKRetrieval(model, min(TOP_K, n_items)).eval()
        example = torch.from_numpy(random_histories(n_items, model.history_len, batch=4))
        tmp = f"{fp32}.tmp-{os.getpid()}"
        torch.onnx.export(
            module, (example,), tmp, dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
        )
        os.replace(tmp, fp32)
    if not os.path.exists(int8):
        tmp = f"{int8}.tmp-{os.getpid()}"
        # The dynamo exporter's value_info disagrees with onnx shape inference, which quantisation reruns; dropping
        # it (only annotations, not the graph) lets inference redo it cleanly.
        proto = onnx.load(fp32)
        del proto.graph.value_info[:]
        onnx.save(proto, tmp)
        # Weights (the item matrix above all) to int8, activations quantised on the fly: no calibration data needed.
        quantize_dynamic(tmp, tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, int8)
    for precision, path in (("fp32", fp32), ("int8", int8)):
        print(json.dumps({"n_items": n_items, "precision": precision, "path": path, "history_len": TrainConfig().history_len,
                          "top_k": min(TOP_K, n_items)}), flush=True)


def main() -> None:
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for n in sys.argv[2:]:
        build(out_dir, int(n))


if __name__ == "__main__":
    main()
