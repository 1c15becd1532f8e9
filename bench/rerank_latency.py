"""Reranker latency: reordering the top 20 candidates of a question, on 2 CPU cores.

    python bench/rerank_latency.py                  # the trained reranker, 200 questions
    python bench/rerank_latency.py --model DIR --queries 50
    python bench/rerank_latency.py --window 128 --no-compare-full   # a longer window's cost

Chunks the SQuAD v1.1 dev paragraphs as ingestion does (200 encoder tokens, title as
heading), takes BM25's top `--candidates` chunks for a seeded sample of questions (the
reranker's cost depends on how long the chunks are, not on which retriever found them),
then times `CrossEncoderReranker.rerank(question, candidates, top_k=5)` — focusing,
tokenization and the model, as serving calls it — per backend, interleaved query by
query. Only latency is measured here: SQuAD quality is the eval harness's business
(`lectern eval retrieval`), and SQuAD never chooses anything about the reranker.
Writes bench/results/rerank_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import _common
from _common import CpuMonitor, environment, latency_ms, table, write_results

from lectern.settings import Settings
from lectern.types import Chunk, ScoredChunk
from model import prepare
from retriever.cross_encoder import (
    SHIPPED_RERANKER,
    CrossEncoderReranker,
    has_torch_weights,
    head_and_body,
)
from retriever.train.reranker_data import NegativeMiner

SQUAD = Path("/work/shared/data/squad/squaddev_v1.1.json")
GOAL_MS = 150.0


def squad_chunks(path: Path, tokenizer, articles: int) -> tuple[list[Chunk], list[str]]:
    from ingest.chunker import Chunker
    from ingest.partition import Block

    chunker = Chunker(lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]))
    chunks, questions = [], []
    for article in json.loads(path.read_text())["data"][:articles]:
        for i, para in enumerate(article["paragraphs"]):
            blocks = [Block(p.strip(), "text") for p in para["context"].split("\n\n") if p.strip()]
            for piece in chunker.split(blocks):
                chunks.append(Chunk(len(chunks), f"{article['title']}/{i}", piece.text,
                                    "squad", article["title"]))
            questions += [qa["question"] for qa in para["qas"]]
    return chunks, questions


def variants(model: Path, args: argparse.Namespace) -> dict[str, CrossEncoderReranker]:
    out = {"onnx int8 (serving)": CrossEncoderReranker(model, backend="onnx")}
    if has_torch_weights(model):
        out["torch fp32"] = CrossEncoderReranker(model, backend="torch")
    else:  # the shipped reranker is int8 ONNX only
        print(f"{model} holds no torch weights: torch fp32 not measured", flush=True)
    for window in args.window or []:
        # The same model reading a longer (or shorter) focused window: what it would cost.
        out[f"onnx int8, {window}-token window"] = CrossEncoderReranker(
            model, backend="onnx", max_length=window)
    if args.compare_full:
        # What the same model would cost reading whole chunks instead of a focused window.
        out["onnx int8, whole chunk (256 tokens)"] = CrossEncoderReranker(
            model, backend="onnx", max_length=256, focus=False)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="default: the reranker the settings resolve")
    p.add_argument("--squad", type=Path, default=SQUAD)
    p.add_argument("--articles", type=int, default=48)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare-full", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--window", type=int, action="append",
                   help="also time the model reading this many tokens (repeatable)")
    p.add_argument("--name", default="rerank_latency")
    args = p.parse_args()

    settings = Settings()
    model = args.model or prepare.reranker(settings, shipped=SHIPPED_RERANKER)
    if model is None:
        raise SystemExit("no reranker: train one with `lectern train reranker` or give --model")
    rerankers = variants(Path(model), args)
    t0 = time.perf_counter()
    for r in rerankers.values():
        r.warm_up()
    load_seconds = time.perf_counter() - t0
    serving = next(iter(rerankers.values()))
    chunks, questions = squad_chunks(args.squad, serving.tokenizer, args.articles)
    miner = NegativeMiner(chunks)
    rng = random.Random(args.seed)
    picked = rng.sample(questions, args.queries + args.warmup)
    lists = [[chunks[i] for i in top] for top in miner.search(picked, args.candidates)]
    work = [(q, h) for q, h in zip(picked, lists, strict=True) if len(h) == args.candidates]
    warm, timed = work[: args.warmup], work[args.warmup :]
    print(f"{len(chunks)} chunks; {len(timed)} questions with {args.candidates} candidates",
          flush=True)

    def scored(hits: list[Chunk]) -> list[ScoredChunk]:
        return [ScoredChunk(c, 1.0 / (n + 1)) for n, c in enumerate(hits)]

    for r in rerankers.values():
        for q, hits in warm:
            r.rerank(q, scored(hits), args.top_k)
    names = list(rerankers)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    prep: list[float] = []
    monitor = CpuMonitor()
    for i, (q, hits) in enumerate(timed):
        for name in names[i % len(names):] + names[: i % len(names)]:
            candidates = scored(hits)
            t, c = time.perf_counter(), time.process_time()
            rerankers[name].rerank(q, candidates, args.top_k)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        t = time.perf_counter()  # the serving variant's focusing + tokenization alone
        texts = serving.inputs(q, [head_and_body(c) for c in hits])
        serving.tokenizer([q] * len(texts), texts, padding=True, truncation="longest_first",
                          max_length=serving.max_length, return_tensors="np")
        prep.append(time.perf_counter() - t)
    contention = monitor.stop()

    threads = {n: r.threads or None for n, r in rerankers.items()}
    rows, results = [], {}
    for name in names:
        lat = latency_ms(wall[name])
        cpu_ms = sorted(x * 1000 for x in cpu[name])
        lat["cpu_ms_p50"] = round(_common.percentile(cpu_ms, 50), 2)
        r = rerankers[name]
        results[name] = {**lat, "backend": r.backend, "max_length": r.max_length,
                         "focus": r.use_focus, "threads": threads[name]}
        rows.append([name, r.max_length, f"{lat['p50_ms']:.1f}", f"{lat['p95_ms']:.1f}",
                     f"{lat['mean_ms']:.1f}", f"{lat['cpu_ms_p50']:.1f}"])
    serving_p50 = results[names[0]]["p50_ms"]
    met = serving_p50 <= GOAL_MS
    info = serving.info
    cfg = info.get("config", {})
    data = {
        "benchmark": "rerank_latency",
        "model": str(model),
        "model_config": {k: cfg.get(k) for k in ("layers", "backbone_layers", "max_length",
                                                 "loss", "questions", "seed")},
        "model_validation": info.get("validation", {}).get("overall"),
        "candidates": args.candidates, "top_k": args.top_k, "queries": len(timed),
        "chunks": len(chunks), "load_seconds": round(load_seconds, 2),
        "variants": results,
        "focus_and_tokenize_ms": latency_ms(prep),
        "goal_p50_ms": GOAL_MS, "goal_met": met,
        "contention": contention, "environment": environment(),
    }
    other = contention.get("other_processes_share_of_capacity")
    md = "\n\n".join([
        "# Reranker latency",
        f"Reranking the top {args.candidates} BM25 chunks of {len(timed)} SQuAD v1.1 dev "
        f"questions (seed {args.seed}; {len(chunks)} chunks of 200 encoder tokens from "
        f"{args.articles} articles) and keeping {args.top_k}; {args.warmup} warm-up queries "
        f"per variant, variants interleaved query by query. Model `{model}`: "
        f"{cfg.get('layers')} of {cfg.get('backbone_layers')} MiniLM layers, trained at "
        f"max_length {cfg.get('max_length')}. {data['environment']['date']}, "
        f"{data['environment']['cpu_count']} CPUs ({data['environment']['cpu_model']}).",
        table(["variant", "max tokens", "p50 ms", "p95 ms", "mean ms", "CPU ms p50"], rows),
        f"Goal p50 ≤ {GOAL_MS:.0f} ms for the top {args.candidates}: "
        f"**{'met' if met else 'not met'}**: {names[0]} p50 = {serving_p50:.1f} ms. "
        f"Focusing and tokenizing alone: p50 {data['focus_and_tokenize_ms']['p50_ms']:.1f} ms.",
        f"Other processes' share of the machine's CPU capacity during the timed runs: "
        f"{other if other is None else f'{other:.0%}'} (above a few % the wall times are "
        "inflated by contention; CPU ms is this process's own CPU time per query).",
    ])
    js, mdp = write_results(args.name, data, md)
    print(md)
    print(f"\nwrote {js} and {mdp}")


if __name__ == "__main__":
    main()
