"""Int8 dynamic quantization of the served ONNX graph, gated on quality and speed against the float graph.

    OMP_NUM_THREADS=1 python -m models.quantize --onnx O/model.onnx --out O/model.int8.onnx --data-dir D \
        [--tolerance 0.01] [--min-speedup 0.10] [--k 10] [--runs 1000] [--warmup 100] [--per-channel] \
        [--op-types MatMul]

1. Quantize: onnxruntime.quantization.quantize_dynamic on the served graph (--onnx, as models/export.py wrote it):
   int8 weights for the MatMuls with a constant operand (the item matrix, the towers' and attention blocks'
   projections), activations quantized on the fly; MatMuls between two activations (attention scores) stay float.
   The result keeps the served contract (input history, outputs scores/items [batch, K], recsys.* metadata) and is
   written atomically to --out: this is the file that ships if the gate passes. Per-tensor weight scales are the
   default: in bench/quantization.ts per-channel scales kept NDCG@10 about as well (both within 0.5%) but their
   MatMulInteger path was slower than per-tensor's, for two-tower no faster than float at all.
2. Evaluate both graphs on the test split with full ranking: an evaluation copy of each graph has TopK's K set to
   n_items (every other node and weight untouched, so the int8 copy holds exactly the weights that ship); the scores
   are scattered back to a (users, n_items) matrix and ranked as models/evaluate.py does (history items excluded,
   users without a test item outside their history skipped), with the metrics of models/metrics.py.
3. Time both served graphs on the same inputs: single-user requests (batch 1), 1 intra-op thread, `--warmup` runs
   each, then `--runs` paired runs: run i times float and int8 back to back on the same history (which goes first
   alternates run by run), so the two samples of a pair share the machine's load and input.
4. Gate: int8 ships iff its NDCG@k is within `--tolerance` (relative) of the float graph's AND it is faster beyond
   the timer's noise; otherwise the float graph ships. Both files and their figures are reported either way.
   "Faster" is one rule for every graph pair (a family's graph, or a cascade stage's; `decide`/`speedup_test` are
   pure functions of the two latency samples): with r = p50(int8) / p50(float) over the paired runs and [lo, hi]
   its 95% paired-bootstrap percentile interval (2000 resamples of whole pairs, fixed seed), int8 is faster iff
   r <= 1 - min_speedup AND hi <= 1 - min_speedup, i.e. at least a `--min-speedup` (10%) lower p50 that the
   spread of the measurement cannot explain. A 0.026 vs 0.027 ms p50 (r = 0.96) does not ship.

stdout (JSON lines): {"event":"progress","stage":"quantize"|"evaluate"|"time",...} then
  {"event":"result","float_path":..,"int8_path":..,"int8_bytes":..,"float_bytes":..,"k":10,"tolerance":0.01,
   "min_speedup":0.1,"float":{"recall@10":..,"ndcg@10":..,"hr@10":..,"mrr":..,"p50_ms":..,"p99_ms":..},"int8":{...},
   "relative_ndcg_change":-0.004,"ships":"int8"|"float",
   "reason":"int8 not faster beyond noise: p50 ratio 0.96 [0.91, 1.02] (needs <= 0.90); p50 ...",
   "p50_ratio":0.96,"p50_ratio_lo":0.91,"p50_ratio_hi":1.02,"quantized_ops":{"MatMulInteger":3,...},
   "per_channel":false,"op_types":["MatMul"],"n_users":N,"n_skipped_users":S,
   "latency":{"runs":R,"warmup":W,"batch":1,"threads":1,"order":"alternating","confidence":0.95,
              "bootstrap_resamples":2000}}
"""

from __future__ import annotations

import collections
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from models.data import DataError, Interactions, UserSequences, read_manifest, read_split
from models.evaluate import pair_mask
from models.jsonl import ArgumentParser, UsageError, emit, run
from models.metrics import per_user_metrics

INPUT_NAME, SCORES, ITEMS = "history", "scores", "items"
SCORE_CELLS_PER_BATCH = 2**22  # like models/evaluate.py: users per batch = this / n_items


class QuantizationError(RuntimeError):
    """The graph cannot be quantized or evaluated as the served contract expects."""


def add_gate_arguments(p: ArgumentParser, what: str) -> None:
    """The gate's flags, shared with models/cascade_quantize.py (`what`: what is timed, e.g. "graph")."""
    p.add_argument("--data-dir", required=True, help="dataset directory; its test split is evaluated")
    p.add_argument("--tolerance", type=float, default=0.01, help="max relative NDCG@k loss of int8 (0.01 = 1%%)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--runs", type=int, default=1000, help=f"timed single-user requests per {what}")
    p.add_argument("--warmup", type=int, default=100, help=f"untimed requests per {what} before timing")
    p.add_argument("--min-speedup", type=float, default=0.10,
                   help="int8 must cut p50 by at least this fraction, beyond noise (0.10 = 10%%)")
    p.add_argument("--per-channel", action="store_true", help="one weight scale per output column (item)")
    p.add_argument("--op-types", default="MatMul", help="comma-separated op types to quantize (default MatMul)")


def check_gate_arguments(args: Any) -> None:
    if not (0 <= args.tolerance < 1):
        raise UsageError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    if not (0 <= args.min_speedup < 1):
        raise UsageError(f"--min-speedup must be in [0, 1), got {args.min_speedup}")
    if args.k < 1 or args.runs < 1 or args.warmup < 0:
        raise UsageError("--k and --runs must be >= 1, --warmup >= 0")


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.quantize",
                       description="Int8 dynamic quantization, gated on NDCG and latency (JSON lines on stdout).")
    p.add_argument("--onnx", required=True, help="the served float graph (models/export.py output)")
    p.add_argument("--out", required=True, help="int8 ONNX file to write (same contract as --onnx)")
    add_gate_arguments(p, "graph")
    args = p.parse_args(argv)
    check_gate_arguments(args)
    if not os.path.isfile(args.onnx):
        raise UsageError(f"--onnx {args.onnx}: no such file")
    return args


# ---- graphs -----------------------------------------------------------------------------------------------------


def metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def graph_shape(proto: onnx.ModelProto) -> tuple[int, int]:
    """(n_items, history_len) from the recsys.* metadata that models/export.py writes."""
    meta = metadata(proto)
    try:
        return int(meta["recsys.n_items"]), int(meta["recsys.history_len"])
    except (KeyError, ValueError):
        raise QuantizationError("graph lacks recsys.n_items/recsys.history_len metadata (not from models.export?)")


def quantize(float_path: str, out: str, per_channel: bool, op_types: list[str]) -> dict[str, int]:
    """Writes the int8 served graph atomically to `out`; returns the op counts it introduced."""
    proto = onnx.load(float_path)
    # The dynamo exporter's value_info disagrees with the shape inference quantization reruns; it holds annotations
    # only, so dropping it changes nothing in the graph.
    del proto.graph.value_info[:]
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}.onnx"
    try:
        quantize_dynamic(proto, tmp, op_types_to_quantize=op_types, per_channel=per_channel,
                         weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        quantized = onnx.load(tmp)
        props = {**metadata(proto), "recsys.precision": "int8",
                 "recsys.quantization": f"dynamic int8 weights, op_types={','.join(op_types)}, "
                                        f"per_channel={per_channel}"}
        del quantized.metadata_props[:]
        onnx.helper.set_model_props(quantized, props)
        onnx.save(quantized, tmp)
        onnx.checker.check_model(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    before = collections.Counter(n.op_type for n in proto.graph.node)
    after = collections.Counter(n.op_type for n in quantized.graph.node)
    return {op: n - before.get(op, 0) for op, n in sorted(after.items()) if n > before.get(op, 0)}


def full_ranking_variant(proto: onnx.ModelProto, n_items: int) -> onnx.ModelProto:
    """A copy whose TopK returns every item (K = n_items): same nodes and weights, only K and the output shapes
    change. Its outputs scattered back give the full score matrix."""
    variant = onnx.ModelProto()
    variant.CopyFrom(proto)
    graph = variant.graph
    topk = [n for n in graph.node if n.op_type == "TopK"]
    if len(topk) != 1:
        raise QuantizationError(f"expected one TopK node in the served graph, found {len(topk)}")
    name, old = "recsys_full_ranking_k", topk[0].input[1]
    graph.initializer.append(numpy_helper.from_array(np.array([n_items], dtype=np.int64), name))
    topk[0].input[1] = name
    if not any(old in n.input for n in graph.node):  # the served K, now unused
        kept = [i for i in graph.initializer if i.name != old]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes downstream of TopK now hold n_items columns
    for output in graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 2:
            dims[1].ClearField("dim_value")
            dims[1].dim_param = "k"
    return variant


def session(model: str | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


# ---- evaluation -------------------------------------------------------------------------------------------------


@dataclass
class TestSet:
    seen: UserSequences
    targets: UserSequences
    users: np.ndarray  # users with at least one test item


def load_test_set(data_dir: str, n_items: int) -> TestSet:
    manifest = read_manifest(data_dir)
    if manifest.n_items != n_items:
        raise DataError(f"the graph scores {n_items} items, dataset {data_dir} has {manifest.n_items}")
    train, valid, test = (read_split(data_dir, s, manifest) for s in ("train", "valid", "test"))
    seen = UserSequences(Interactions.concat(train, valid), manifest.n_users)
    targets = UserSequences(test, manifest.n_users)
    return TestSet(seen, targets, np.flatnonzero(targets.end > targets.start))


def graph_feed(data: TestSet, users: np.ndarray, history_len: int,
               sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    """The served graph's inputs for `users`: history, and for graphs that take them (the continuous-time families,
    models/export.py TIME_INPUT_NAMES) timestamps and query_time = the first test interaction's time, as
    models/evaluate.py feeds them."""
    names = {i.name for i in sess.get_inputs()}
    feed = {INPUT_NAME: data.seen.user_histories(users, history_len)}
    if "timestamps" in names:
        feed["timestamps"] = data.seen.user_history_times_ms(users, history_len)
    if "query_time" in names:
        feed["query_time"] = data.targets.ts[data.targets.start[users]] * 1000
    return feed


Scorer = Callable[[np.ndarray], np.ndarray]
"""Full-catalogue scores (len(users), n_items) of some ranker for the given users; column j is item j + 1."""


def graph_scorer(sess: ort.InferenceSession, data: TestSet, history_len: int, n_items: int) -> Scorer:
    """A full-ranking graph (full_ranking_variant) as a Scorer: its TopK over every item scattered back."""

    def scores(users: np.ndarray) -> np.ndarray:
        top_scores, top_items = sess.run([SCORES, ITEMS], graph_feed(data, users, history_len, sess))
        full = np.empty((len(users), n_items), dtype=np.float32)
        full[np.arange(len(users))[:, None], top_items - 1] = top_scores  # each column is written once
        return full

    return scores


def evaluate_scorers(scorers: dict[str, Scorer], data: TestSet, n_items: int,
                     k: int) -> tuple[dict[str, dict[str, float]], int, int]:
    """Full-ranking metrics of each ranker on the same users, ranked as models/evaluate.py does (history items
    excluded, users without a test item outside their history skipped); returns (metrics, n_users, n_skipped)."""
    per_user: dict[str, dict[str, list[np.ndarray]]] = {g: collections.defaultdict(list) for g in scorers}
    skipped = evaluated = 0
    batch = max(1, SCORE_CELLS_PER_BATCH // n_items)
    for lo in range(0, len(data.users), batch):
        users = data.users[lo : lo + batch]
        shape = (len(users), n_items)
        excluded = pair_mask(shape, *data.seen.user_item_pairs(users))
        relevant = pair_mask(shape, *data.targets.user_item_pairs(users)) & ~excluded
        keep = relevant.any(axis=1)
        skipped += int((~keep).sum())
        users, excluded, relevant = users[keep], excluded[keep], relevant[keep]
        if len(users) == 0:
            continue
        evaluated += len(users)
        for name, score in scorers.items():
            ranked = np.where(excluded, -np.inf, score(users))
            for metric, values in per_user_metrics(ranked, relevant, k).items():
                per_user[name][metric].append(values)
        emit("progress", stage="evaluate", users=evaluated, total=len(data.users))
    if evaluated == 0:
        raise DataError("no test user has a test item outside their history; nothing to evaluate")
    metrics = {g: {m: float(np.concatenate(v).mean()) for m, v in d.items()} for g, d in per_user.items()}
    return metrics, evaluated, skipped


def evaluate_graphs(graphs: dict[str, ort.InferenceSession], data: TestSet, n_items: int, history_len: int,
                    k: int) -> tuple[dict[str, dict[str, float]], int, int]:
    """Full-ranking metrics of each full-ranking graph on the same users; returns (metrics, n_users, n_skipped)."""
    return evaluate_scorers({name: graph_scorer(sess, data, history_len, n_items) for name, sess in graphs.items()},
                            data, n_items, k)


# ---- latency ----------------------------------------------------------------------------------------------------


def paired_latency(graphs: dict[str, ort.InferenceSession], feeds: Sequence[dict[str, np.ndarray]], runs: int,
                   warmup: int) -> dict[str, np.ndarray]:
    """Milliseconds per request of each graph, `runs` paired samples: run i feeds every graph feeds[i % len(feeds)]
    back to back, so sample i of each graph saw the same input and (nearly) the same machine load. The order within
    a pair alternates (rotates) run by run, so neither graph always runs first on a warm cache. Works for any graphs
    taking the same feeds (the cascade's stages too); every output is fetched."""
    if not feeds:
        raise ValueError("paired_latency needs at least one feed")
    for sess in graphs.values():
        for i in range(warmup):
            sess.run(None, feeds[i % len(feeds)])
    names = list(graphs)
    samples = {g: np.empty(runs) for g in names}
    for i in range(runs):
        feed = feeds[i % len(feeds)]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            sess = graphs[name]
            t0 = time.perf_counter_ns()
            sess.run(None, feed)
            samples[name][i] = (time.perf_counter_ns() - t0) / 1e6
    return samples


def latency_figures(samples: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(samples, 50)), "p99_ms": float(np.percentile(samples, 99))}


def time_graphs(graphs: dict[str, ort.InferenceSession], inputs: np.ndarray | dict[str, np.ndarray], runs: int,
                warmup: int) -> dict[str, np.ndarray]:
    """Paired single-user (batch 1) latency samples of served retrieval graphs over the histories `inputs` (or the
    inputs by name, one row per user: graph_feed's)."""
    columns = inputs if isinstance(inputs, dict) else {INPUT_NAME: inputs}
    n = len(next(iter(columns.values())))
    return paired_latency(graphs, [{k: v[i : i + 1] for k, v in columns.items()} for i in range(n)], runs, warmup)


# ---- gate -------------------------------------------------------------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_CELLS_PER_CHUNK = 2**22  # resampled timings held at once (float64: 32 MiB)


def relative_change(new: float, old: float) -> float:
    if old == 0:
        return 0.0 if new == old else math.inf
    return (new - old) / old


@dataclass(frozen=True)
class Speedup:
    """int8 p50 / float p50 over paired runs, with its paired-bootstrap interval, and the verdict of the rule."""
    p50_ratio: float
    lo: float
    hi: float
    min_speedup: float
    faster: bool  # p50_ratio <= 1 - min_speedup and hi <= 1 - min_speedup
    runs: int
    confidence: float = CONFIDENCE
    resamples: int = BOOTSTRAP_RESAMPLES

    @property
    def needed(self) -> float:
        return 1.0 - self.min_speedup

    def describe(self) -> str:
        """e.g. `p50 ratio 0.96 [0.91, 1.02] (needs <= 0.90)`."""
        return f"p50 ratio {self.p50_ratio:.2f} [{self.lo:.2f}, {self.hi:.2f}] (needs <= {self.needed:.2f})"


def latency_samples(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} latency samples must be a non-empty 1-d sequence, got shape {array.shape}")
    bad = np.flatnonzero(~(np.isfinite(array) & (array > 0)))
    if len(bad):
        raise ValueError(f"{name} latency samples must be finite and > 0: sample {bad[0]} is {array[bad[0]]}")
    return array


def speedup_test(float_ms: Sequence[float] | np.ndarray, int8_ms: Sequence[float] | np.ndarray, min_speedup: float,
                 confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Speedup:
    """Is int8 faster than float beyond the measurement's spread? Pure: the same samples give the same answer.

    float_ms[i] and int8_ms[i] are a pair (same input, timed back to back). The p50 ratio int8/float is resampled by
    a paired bootstrap: `resamples` times, draw run indices with replacement and take the ratio of the two medians
    over the same drawn runs (a pair keeps its shared machine load). The interval is the percentile interval at
    `confidence`. int8 is faster iff the observed ratio AND the interval's upper end are <= 1 - min_speedup: a
    speed-up of at least min_speedup that the noise cannot explain."""
    f, q = latency_samples("float", float_ms), latency_samples("int8", int8_ms)
    if len(f) != len(q):
        raise ValueError(f"paired latency samples differ in length: float {len(f)}, int8 {len(q)}")
    if not (0 <= min_speedup < 1):
        raise ValueError(f"min_speedup must be in [0, 1), got {min_speedup}")
    if not (0 < confidence < 1) or resamples < 1:
        raise ValueError(f"confidence must be in (0, 1) and resamples >= 1, got {confidence}, {resamples}")
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples)
    chunk = max(1, BOOTSTRAP_CELLS_PER_CHUNK // len(f))
    for lo in range(0, resamples, chunk):
        idx = rng.integers(0, len(f), size=(min(chunk, resamples - lo), len(f)))
        ratios[lo : lo + len(idx)] = np.median(q[idx], axis=1) / np.median(f[idx], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(v) for v in np.percentile(ratios, [tail, 100 - tail]))
    ratio = float(np.median(q) / np.median(f))
    needed = 1.0 - min_speedup
    return Speedup(ratio, low, high, min_speedup, ratio <= needed and high <= needed, len(f), confidence, resamples)


class Decision(NamedTuple):
    ships: str  # "int8" | "float"
    reason: str
    relative_ndcg_change: float
    speedup: Speedup


def decide(float_ndcg: float, int8_ndcg: float, float_ms: Sequence[float] | np.ndarray,
           int8_ms: Sequence[float] | np.ndarray, tolerance: float, k: int = 10,
           min_speedup: float = 0.10) -> Decision:
    """Which graph ships. int8 ships only if its NDCG@k is within `tolerance` (relative) of float's and it is faster
    beyond noise by speedup_test over the paired latency samples (ms per request). The same rule for any pair of
    graphs (a model's, or one cascade stage's); the speed figures are computed either way."""
    change = relative_change(int8_ndcg, float_ndcg)
    speed = speedup_test(float_ms, int8_ms, min_speedup)
    p50s = (f"p50 {float(np.median(int8_ms)):.3f} ms vs {float(np.median(float_ms)):.3f} ms over {speed.runs} "
            f"paired runs")
    if change < -tolerance:
        return Decision("float", f"int8 NDCG@{k} {change * 100:+.2f}% exceeds tolerance {tolerance * 100:g}% "
                                 f"({int8_ndcg:.4f} vs {float_ndcg:.4f})", change, speed)
    if not speed.faster:
        return Decision("float", f"int8 not faster beyond noise: {speed.describe()}; {p50s}", change, speed)
    return Decision("int8", f"int8 NDCG@{k} {change * 100:+.2f}% within tolerance {tolerance * 100:g}% and faster "
                            f"beyond noise: {speed.describe()}; {p50s}", change, speed)


def quantize_and_gate(args: Any) -> dict[str, Any]:
    float_proto = onnx.load(args.onnx)
    n_items, history_len = graph_shape(float_proto)
    data = load_test_set(args.data_dir, n_items)  # fail on a wrong dataset before the slow steps

    emit("progress", stage="quantize")
    op_types = [t.strip() for t in args.op_types.split(",") if t.strip()]
    quantized_ops = quantize(args.onnx, args.out, args.per_channel, op_types)
    if not quantized_ops:
        raise QuantizationError(f"nothing was quantized in {args.onnx} (op types {op_types})")
    int8_proto = onnx.load(args.out)

    full = {name: session(full_ranking_variant(proto, n_items).SerializeToString())
            for name, proto in (("float", float_proto), ("int8", int8_proto))}
    metrics, n_users, skipped = evaluate_graphs(full, data, n_items, history_len, args.k)

    emit("progress", stage="time", runs=args.runs, warmup=args.warmup)
    served = {"float": session(args.onnx), "int8": session(args.out)}
    inputs = graph_feed(data, data.users, history_len, served["float"])
    samples = time_graphs(served, inputs, args.runs, args.warmup)

    ndcg = f"ndcg@{args.k}"
    decision = decide(metrics["float"][ndcg], metrics["int8"][ndcg], samples["float"], samples["int8"],
                      args.tolerance, args.k, args.min_speedup)
    speed = decision.speedup
    return {
        "float_path": os.path.abspath(args.onnx), "int8_path": os.path.abspath(args.out),
        "float_bytes": os.path.getsize(args.onnx), "int8_bytes": os.path.getsize(args.out),
        "k": args.k, "tolerance": args.tolerance, "min_speedup": args.min_speedup,
        "float": {**metrics["float"], **latency_figures(samples["float"])},
        "int8": {**metrics["int8"], **latency_figures(samples["int8"])},
        "relative_ndcg_change": decision.relative_ndcg_change, "ships": decision.ships, "reason": decision.reason,
        "p50_ratio": speed.p50_ratio, "p50_ratio_lo": speed.lo, "p50_ratio_hi": speed.hi,
        "quantized_ops": quantized_ops, "per_channel": args.per_channel, "op_types": op_types,
        "n_users": n_users, "n_skipped_users": skipped,
        "latency": {"runs": args.runs, "warmup": args.warmup, "batch": 1, "threads": 1, "order": "alternating",
                    "confidence": speed.confidence, "bootstrap_resamples": speed.resamples},
    }


def main(argv: Sequence[str] | None = None) -> None:
    emit("result", **quantize_and_gate(parse_args(argv)))


if __name__ == "__main__":
    run(main)
