"""Int8 dynamic quantization of a cascade's stage graphs (models/cascade_export.py), each stage gated by the rule of
models/quantize.py, the quality judged on the cascade end to end.

    OMP_NUM_THREADS=1 python -m models.cascade_quantize --recall O/model.recall.onnx --rank O/model.rank.onnx \
        --rerank O/model.rerank.onnx --out-dir Q --data-dir D [--tolerance 0.01] [--min-speedup 0.10] [--k 10] \
        [--runs 1000] [--warmup 100] [--per-channel] [--op-types MatMul]

1. Quantize each stage graph with models/quantize.py's `quantize` (same options, same weights-only dynamic int8):
   Q/<stage>.int8.onnx, each keeping its stage's inputs, outputs and recsys.* metadata (recsys.precision = int8).
2. The cascade from ONNX graphs (`CascadeGraphs`), composed as serving/cascade-ranker.ts composes it: the recall
   stage's top N -> its items of the history window dropped -> rank -> the best M (stable) -> re-rank -> best first.
   For full-ranking metrics the recall stage runs as its full-ranking variant (models/quantize.py: the same nodes and
   weights, every item returned, best first, so its first N are the served graph's N), and the catalogue is ordered
   as Cascade.forward orders it (models/cascade.py `_place`): the re-ranked M, then the other candidates by rank
   score, then every other item by recall score. It is scored as models/quantize.py scores a graph, on the same test
   split (history excluded, users without a test item outside their history skipped): the all-fp32 figures are
   models/evaluate.py's for the cascade. Serving returns the re-ranked list's first K; for NDCG@k with k <= K the two
   orders agree.
3. Time each stage's float and int8 graph in paired single-user runs (models/quantize.py `paired_latency`) on the
   inputs serving gives it: the test users' histories; for rank, the candidates the fp32 recall stage returns for them
   (their history's items dropped); for re-rank, the fp32 ranker's best M with its scores. The three stages are timed
   on the same users in the same order (users left with no candidate are not timed: serving answers them from the
   recall stage alone), so run i of every stage is one request, and the cascade's latency per request is the sum.
4. Decide stage by stage, in cascade order, with models/quantize.py's `decide`: a stage ships int8 iff its int8 graph
   is faster beyond noise (p50 ratio and the upper end of its 95% paired-bootstrap interval <= 1 - min_speedup) AND
   the cascade with it int8, together with the stages already kept int8 and the rest fp32, keeps NDCG@k within
   `tolerance` (relative) of the all-fp32 cascade. The last configuration accepted is the one that ships, so the
   cascade that ships has passed the quality check itself, and the tolerance is measured once, against fp32, not
   spent stage by stage. Every stage's quality figure is measured, faster or not.

stdout (JSON lines): {"event":"progress","stage":"quantize"|"evaluate"|"time",...} then
  {"event":"result","kind":"cascade","k":10,"tolerance":0.01,"min_speedup":0.1,
   "float":{"recall@10":..,"ndcg@10":..,"hr@10":..,"mrr":..,"p50_ms":..,"p99_ms":..}   (the all-fp32 cascade),
   "int8":{...}                (the cascade that ships: chosen graph per stage),
   "relative_ndcg_change":..,  (int8 vs float above)
   "ships":"int8"|"float",     (int8 when at least one stage ships int8)
   "reason":"recall int8: ... | rank float: ... | rerank float: ...",
   "stages":[{"name":"recall","ships":"int8"|"float","reason":..,"float_path":..,"int8_path":..,"float_bytes":..,
              "int8_bytes":..,"top_k":N,"quantized_ops":{..},"float":{"p50_ms","p99_ms"},"int8":{...},
              "p50_ratio":..,"p50_ratio_lo":..,"p50_ratio_hi":..,"faster":bool,
              "int8_stages":["recall"],  (the configuration its quality was measured in)
              "cascade":{"ndcg@10":..,...},"relative_ndcg_change":..}, {"name":"rank",...}, {"name":"rerank",...}],
   "n_users":N,"n_skipped_users":S,"n_timed_users":T,
   "latency":{"runs","warmup","batch":1,"threads":1,"order":"alternating","confidence","bootstrap_resamples"}}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch

from models.cascade import Cascade
from models.jsonl import ArgumentParser, UsageError, emit, run
from models.quantize import (Decision, QuantizationError, Scorer, TestSet, add_gate_arguments, check_gate_arguments,
                             decide, evaluate_scorers, full_ranking_variant, graph_shape, latency_figures,
                             load_test_set, metadata, paired_latency, quantize, relative_change, session)

STAGES = ("recall", "rank", "rerank")
# Users per rank/re-rank call: DIN materialises a (users, C, L, 4 * d) tensor, about 160 MB at C = 100, L = 50, d = 64.
RANKING_ROWS = 32
# What each stage graph takes (models/cascade_export.py; lib/cascade-manifest.ts's header).
STAGE_INPUTS = {"recall": ("history",), "rank": ("history", "candidates"),
                "rerank": ("history", "candidates", "rank_scores")}


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="python -m models.cascade_quantize",
                       description="Int8 quantization of a cascade's stage graphs, each gated on the end-to-end "
                                   "NDCG and its own latency (JSON lines on stdout).")
    for stage in STAGES:
        p.add_argument(f"--{stage}", required=True, help=f"the {stage} stage's float graph (models.export output)")
    p.add_argument("--out-dir", required=True, help="directory for <stage>.int8.onnx")
    add_gate_arguments(p, "stage graph")
    args = p.parse_args(argv)
    check_gate_arguments(args)
    for stage in STAGES:
        if not os.path.isfile(getattr(args, stage)):
            raise UsageError(f"--{stage} {getattr(args, stage)}: no such file")
    return args


# ---- the stage graphs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageGraph:
    name: str
    path: str
    proto: onnx.ModelProto
    top_k: int  # recall: N; rank: M; rerank: K


def load_stage(name: str, path: str) -> StageGraph:
    """A stage graph as models/cascade_export.py wrote it, or an error naming the file and what is wrong."""
    proto = onnx.load(path)
    meta = metadata(proto)
    if meta.get("recsys.stage") != name:
        raise QuantizationError(f"{path}: recsys.stage is {meta.get('recsys.stage')!r}, expected {name!r} "
                                f"(not the {name} stage of a cascade export?)")
    inputs = tuple(i.name for i in proto.graph.input)
    if inputs != STAGE_INPUTS[name]:
        raise QuantizationError(f"{path}: the {name} stage takes {list(inputs)}, expected {list(STAGE_INPUTS[name])}")
    try:
        top_k = int(meta["recsys.top_k"])
    except (KeyError, ValueError):
        raise QuantizationError(f"{path}: no integer recsys.top_k metadata (got {meta.get('recsys.top_k')!r})")
    return StageGraph(name, path, proto, top_k)


def cascade_shape(stages: dict[str, StageGraph]) -> tuple[int, int]:
    """(n_items, history_len), the same for every stage."""
    shapes = {name: graph_shape(s.proto) for name, s in stages.items()}
    if len(set(shapes.values())) != 1:
        raise QuantizationError(f"the stage graphs disagree on (n_items, history_len): {shapes}")
    return shapes["recall"]


# ---- the cascade from ONNX graphs -------------------------------------------------------------------------------


@dataclass
class CascadeOutput:
    """One batch of users through the cascade."""

    scores: np.ndarray  # (B, n_items): the catalogue in the cascade's final order (Cascade.forward's)
    # Per user, the rank and re-rank stages' inputs as serving would send them (batch 1); None when no candidate is
    # left after dropping the history's items. Filled only when asked for (the timing's inputs).
    rank_feeds: list[dict[str, np.ndarray] | None] = field(default_factory=list)
    rerank_feeds: list[dict[str, np.ndarray] | None] = field(default_factory=list)


class CascadeGraphs:
    """recall (full-ranking variant) -> drop the history's items -> rank -> best M -> re-rank, on ONNX sessions."""

    def __init__(self, recall_full: ort.InferenceSession, rank: ort.InferenceSession,
                 rerank: ort.InferenceSession, n_items: int, recall_n: int, rerank_m: int):
        self.recall_full, self.rank, self.rerank = recall_full, rank, rerank
        self.n_items, self.recall_n, self.rerank_m = n_items, recall_n, rerank_m

    def run(self, history: np.ndarray, feeds: bool = False) -> CascadeOutput:
        batch = len(history)
        top_scores, top_items = self.recall_full.run(["scores", "items"], {"history": history})
        recall = np.empty((batch, self.n_items), dtype=np.float32)
        recall[np.arange(batch)[:, None], top_items - 1] = top_scores  # every item, once
        candidates = top_items[:, : self.recall_n]
        # As serving does: the history's own items never reach the ranking stages (padding 0 is never an item).
        keep = ~(candidates[:, :, None] == history[:, None, :]).any(axis=2)
        counts = keep.sum(axis=1)
        # Users left without candidates keep the recall order (serving answers them from the recall stage alone).
        out = CascadeOutput(recall, [None] * batch if feeds else [], [None] * batch if feeds else [])
        # Users with the same number of candidates go through the ranking stages together (C is one per call).
        for c in np.unique(counts[counts > 0]):
            for lo in range(0, int((counts == c).sum()), RANKING_ROWS):
                rows = np.flatnonzero(counts == c)[lo : lo + RANKING_ROWS]
                self._rank_rows(rows, history[rows], candidates[rows][keep[rows]].reshape(len(rows), c), recall,
                                out, feeds)
        return out

    def _rank_rows(self, rows: np.ndarray, history: np.ndarray, candidates: np.ndarray, recall: np.ndarray,
                   out: CascadeOutput, feeds: bool) -> None:
        (rank_scores,) = self.rank.run(["scores"], {"history": history, "candidates": candidates})
        by_rank = np.argsort(-rank_scores, axis=1, kind="stable")  # serving's orderBestFirst: ties keep the order
        ranked = np.take_along_axis(candidates, by_rank, axis=1)
        ranked_scores = np.take_along_axis(rank_scores, by_rank, axis=1)
        m = min(self.rerank_m, candidates.shape[1])
        top, top_scores = ranked[:, :m], ranked_scores[:, :m]
        (rerank_scores,) = self.rerank.run(["scores"], {"history": history, "candidates": top,
                                                         "rank_scores": top_scores})
        final = np.take_along_axis(top, np.argsort(-rerank_scores, axis=1, kind="stable"), axis=1)
        ordered = np.concatenate([final, ranked[:, m:]], axis=1)
        # Cascade.forward's placement (models/cascade.py), so the order is the one models/evaluate.py measures.
        out.scores[rows] = Cascade._place(torch.from_numpy(recall[rows]), torch.from_numpy(ordered)).numpy()
        if feeds:
            for j, row in enumerate(rows):
                out.rank_feeds[row] = {"history": history[j : j + 1], "candidates": candidates[j : j + 1]}
                out.rerank_feeds[row] = {"history": history[j : j + 1], "candidates": top[j : j + 1],
                                         "rank_scores": top_scores[j : j + 1]}


@dataclass
class Graphs:
    """Both precisions of every stage: files, protos and sessions (served and, for recall, full-ranking)."""

    stages: dict[str, dict[str, StageGraph]]  # stage -> precision -> graph
    served: dict[str, dict[str, ort.InferenceSession]]
    recall_full: dict[str, ort.InferenceSession]
    n_items: int
    history_len: int

    def cascade(self, int8: Sequence[str]) -> CascadeGraphs:
        """The cascade with the stages in `int8` int8, the rest float."""
        p = {s: "int8" if s in int8 else "float" for s in STAGES}
        return CascadeGraphs(self.recall_full[p["recall"]], self.served["rank"][p["rank"]],
                             self.served["rerank"][p["rerank"]], self.n_items,
                             self.stages["recall"]["float"].top_k, self.stages["rank"]["float"].top_k)


def cascade_scorer(cascade: CascadeGraphs, data: TestSet, history_len: int) -> Scorer:
    return lambda users: cascade.run(data.seen.user_histories(users, history_len)).scores


def timing_feeds(graphs: Graphs, data: TestSet, users_needed: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each stage's single-user inputs for the first `users_needed` test users that reach the ranking stages, from
    the fp32 cascade's own outputs (what serving would send each stage)."""
    cascade = graphs.cascade(())
    out: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in STAGES}
    for lo in range(0, len(data.users), RANKING_ROWS):
        history = data.seen.user_histories(data.users[lo : lo + RANKING_ROWS], graphs.history_len)
        run_ = cascade.run(history, feeds=True)
        for i, (rank, rerank) in enumerate(zip(run_.rank_feeds, run_.rerank_feeds)):
            if rank is not None and rerank is not None:
                out["recall"].append({"history": history[i : i + 1]})
                out["rank"].append(rank)
                out["rerank"].append(rerank)
        if len(out["recall"]) >= users_needed:
            break
    if not out["recall"]:
        raise QuantizationError("no test user reaches the ranking stages (every candidate is in their history)")
    return {s: v[:users_needed] for s, v in out.items()}


# ---- quantize, evaluate, time, decide ---------------------------------------------------------------------------


def quantize_stages(args: Any, op_types: list[str]) -> tuple[Graphs, dict[str, dict[str, int]]]:
    stages: dict[str, dict[str, StageGraph]] = {}
    ops: dict[str, dict[str, int]] = {}
    for name in STAGES:
        fp32 = load_stage(name, getattr(args, name))
        emit("progress", stage="quantize", graph=name)
        out = os.path.join(os.path.abspath(args.out_dir), f"{name}.int8.onnx")
        ops[name] = quantize(fp32.path, out, args.per_channel, op_types)
        if not ops[name]:
            raise QuantizationError(f"nothing was quantized in the {name} stage {fp32.path} (op types {op_types})")
        stages[name] = {"float": fp32, "int8": load_stage(name, out)}
    n_items, history_len = cascade_shape({s: g["float"] for s, g in stages.items()})
    served = {s: {p: session(g.path) for p, g in by.items()} for s, by in stages.items()}
    recall_full = {p: session(full_ranking_variant(g.proto, n_items).SerializeToString())
                   for p, g in stages["recall"].items()}
    return Graphs(stages, served, recall_full, n_items, history_len), ops


def configuration_metrics(graphs: Graphs, data: TestSet, k: int,
                          int8: tuple[str, ...]) -> tuple[dict[str, float], int, int]:
    """The cascade's full-ranking metrics with the `int8` stages int8 and the rest float: (metrics, users, skipped)."""
    emit("progress", stage="evaluate", int8_stages=list(int8))
    metrics, n_users, skipped = evaluate_scorers(
        {"cascade": cascade_scorer(graphs.cascade(int8), data, graphs.history_len)}, data, graphs.n_items, k)
    return metrics["cascade"], n_users, skipped


def stage_reason(decision: Decision, int8: Sequence[str], k: int, ndcg: float, base: float) -> str:
    """decide's reason, and the configuration the stage's quality was measured in."""
    rest = [s for s in STAGES if s not in int8]
    return (f"{decision.reason}; cascade NDCG@{k} {ndcg:.4f} with {'+'.join(int8)} int8"
            f"{' and ' + '+'.join(rest) + ' fp32' if rest else ''} vs {base:.4f} all fp32 "
            f"({decision.relative_ndcg_change * 100:+.2f}%)")


@dataclass(frozen=True)
class StageChoice:
    name: str
    int8_stages: tuple[str, ...]  # the configuration the stage's quality was measured in
    metrics: dict[str, float]  # the cascade's, in that configuration
    decision: Decision


def choose_stages(samples: dict[str, dict[str, np.ndarray]], evaluate: Callable[[tuple[str, ...]], dict[str, float]],
                  tolerance: float, k: int, min_speedup: float) -> tuple[tuple[str, ...], list[StageChoice]]:
    """Which stages ship int8 (module docstring, step 4): in cascade order, a stage is kept int8 iff `decide` says
    int8 for its own paired latency samples (samples[stage]["float"|"int8"]) and the NDCG@k of the cascade with it and
    the stages kept before it int8 (evaluate(configuration)) against the all-float cascade's (evaluate(())).
    Returns (the stages kept int8, in order; each stage's choice)."""
    ndcg = f"ndcg@{k}"
    base = evaluate(())
    chosen: tuple[str, ...] = ()
    choices = []
    for name in STAGES:
        trial = chosen + (name,)
        metrics = evaluate(trial)
        decision = decide(base[ndcg], metrics[ndcg], samples[name]["float"], samples[name]["int8"], tolerance, k,
                          min_speedup)
        if decision.ships == "int8":
            chosen = trial
        choices.append(StageChoice(name, trial, metrics, decision))
    return chosen, choices


def quantize_cascade(args: Any) -> dict[str, Any]:
    op_types = [t.strip() for t in args.op_types.split(",") if t.strip()]
    n_items, _ = cascade_shape({s: load_stage(s, getattr(args, s)) for s in STAGES})
    data = load_test_set(args.data_dir, n_items)  # fail on a wrong dataset before the slow steps
    graphs, ops = quantize_stages(args, op_types)

    emit("progress", stage="time", runs=args.runs, warmup=args.warmup)
    feeds = timing_feeds(graphs, data, args.runs)
    samples: dict[str, dict[str, np.ndarray]] = {}
    for name in STAGES:
        emit("progress", stage="time", graph=name, runs=args.runs, warmup=args.warmup)
        samples[name] = paired_latency(graphs.served[name], feeds[name], args.runs, args.warmup)

    evaluated: dict[tuple[str, ...], tuple[dict[str, float], int, int]] = {}

    def evaluate(int8: tuple[str, ...]) -> dict[str, float]:
        evaluated[int8] = configuration_metrics(graphs, data, args.k, int8)
        return evaluated[int8][0]

    chosen, choices = choose_stages(samples, evaluate, args.tolerance, args.k, args.min_speedup)
    base, n_users, skipped = evaluated[()]
    shipped = evaluated[chosen][0]
    ndcg = f"ndcg@{args.k}"
    described = []
    for c in choices:
        speed, graph = c.decision.speedup, graphs.stages[c.name]
        described.append({
            "name": c.name, "ships": c.decision.ships,
            "reason": stage_reason(c.decision, c.int8_stages, args.k, c.metrics[ndcg], base[ndcg]),
            "float_path": os.path.abspath(graph["float"].path), "int8_path": os.path.abspath(graph["int8"].path),
            "float_bytes": os.path.getsize(graph["float"].path), "int8_bytes": os.path.getsize(graph["int8"].path),
            "top_k": graph["float"].top_k, "quantized_ops": ops[c.name],
            "float": latency_figures(samples[c.name]["float"]), "int8": latency_figures(samples[c.name]["int8"]),
            "p50_ratio": speed.p50_ratio, "p50_ratio_lo": speed.lo, "p50_ratio_hi": speed.hi,
            "faster": speed.faster, "int8_stages": list(c.int8_stages), "cascade": c.metrics,
            "relative_ndcg_change": c.decision.relative_ndcg_change,
        })

    # Run i of every stage is the same user's request: the cascade's graph time per request is the sum.
    float_ms = sum(samples[s]["float"] for s in STAGES)
    shipped_ms = sum(samples[s]["int8" if s in chosen else "float"] for s in STAGES)
    speed = choices[0].decision.speedup
    return {
        "kind": "cascade", "k": args.k, "tolerance": args.tolerance, "min_speedup": args.min_speedup,
        "float": {**base, **latency_figures(float_ms)},
        "int8": {**shipped, **latency_figures(shipped_ms)},
        "relative_ndcg_change": relative_change(shipped[ndcg], base[ndcg]),
        "ships": "int8" if chosen else "float",
        "reason": " | ".join(f"{d['name']} {d['ships']}: {d['reason']}" for d in described),
        "stages": described, "n_users": n_users, "n_skipped_users": skipped, "n_timed_users": len(feeds["recall"]),
        "per_channel": args.per_channel, "op_types": op_types,
        "latency": {"runs": args.runs, "warmup": args.warmup, "batch": 1, "threads": 1, "order": "alternating",
                    "confidence": speed.confidence, "bootstrap_resamples": speed.resamples},
    }


def main(argv: Sequence[str] | None = None) -> None:
    emit("result", **quantize_cascade(parse_args(argv)))


if __name__ == "__main__":
    run(main)
