"""The Python peer of the serving benchmark: recsys.v1.Recommender on grpcio + onnxruntime, the stack a Python team
would write first. Same proto, same ONNX graph, same synthetic catalogue (item ids i1..iN) and the same request work
as serving/recommend.ts: map the history to indices, run the graph, drop history items, map the top k back to ids.

    ~/.cache/recsys/bench-venv/bin/python bench/python-peer/server.py --onnx G.onnx --n-items N [--workers 16]

Prints {"port": N} once it accepts calls; exits when its stdin closes (the benchmark ended or died).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from concurrent import futures

import grpc
import numpy as np
import onnxruntime as ort
from grpc_tools import protoc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load_stubs():
    """Generates the Python stubs of the repository's .proto into a temporary directory: nothing generated is kept."""
    out = tempfile.mkdtemp(prefix="recsys-peer-")
    proto_dir = os.path.join(REPO, "proto")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
                      "recsys/v1/recommender.proto"])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    try:
        return importlib.import_module("recsys.v1.recommender_pb2"), importlib.import_module("recsys.v1.recommender_pb2_grpc")
    finally:
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)  # imported modules stay in memory; the files are not needed


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--n-items", type=int, required=True)
    p.add_argument("--workers", type=int, default=16)
    args = p.parse_args()
    pb, pb_grpc = load_stubs()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as our server: small requests, parallelism from concurrent calls
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    history_len = session.get_inputs()[0].shape[1]
    item_ids = [""] + [f"i{i}" for i in range(1, args.n_items + 1)]
    index = {item_id: i for i, item_id in enumerate(item_ids) if i}

    class Recommender(pb_grpc.RecommenderServicer):
        def Recommend(self, request, context):
            known = [index[h.item_id] for h in request.history if h.item_id in index]
            if not request.user_id or not 1 <= request.k <= 100 or not known:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "benchmark peer: needs user_id, k and a known history")
            row = np.zeros((1, history_len), dtype=np.int64)
            recent = known[-history_len:]
            row[0, history_len - len(recent):] = recent
            scores, items = session.run(None, {"history": row})
            skip = set(known)
            skip.update(index.get(i, 0) for i in request.exclude_item_ids)
            out = []
            for score, item in zip(scores[0].tolist(), items[0].tolist()):
                if item not in skip:
                    out.append(pb.ScoredItem(item_id=item_ids[item], score=score))
                    if len(out) == request.k:
                        break
            return pb.RecommendResponse(items=out, model_name="bench-python-peer", model_version="1",
                                        dataset_name="bench-synthetic", dataset_version=str(args.n_items),
                                        request_id=str(uuid.uuid4()))

        def Feedback(self, request, context):
            return pb.FeedbackResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    pb_grpc.add_RecommenderServicer_to_server(Recommender(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port}), flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.stop(0.5)), daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
