"""Search benchmark: latency per mode and a retrieval sanity check on SQuAD v1.1 dev.

    python bench/search.py                         # 2,067 paragraphs, 500 questions
    python bench/search.py --limit 200 --queries 50   # quick run

Indexes every dev paragraph with `Ingestor.ingest_text` (source squad/<title>/<i>) in a
fresh temporary data dir, then times `Lectern.search(q, top_k=10, mode=...)` for hybrid,
dense and bm25 on a seeded sample of questions, after a warm-up. A question's relevant
chunks are those of its own paragraph (matched by chunk.source). Then profiles a hybrid
query stage by stage. Writes bench/results/search.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _common
import numpy as np
from _common import (
    CpuMonitor,
    TimedEmbedder,
    environment,
    latency_ms,
    real_embedder,
    table,
    write_results,
)

from api.service import Lectern
from lectern.protocols import Embedder
from lectern.settings import Settings
from retriever.metrics import mean_scores, score_rank

SQUAD = Path("/work/shared/data/squad/squaddev_v1.1.json")
REMOVED = Path("/work/shared/data/squad/squaddev_v1.1_removed.json")
MODES = ("hybrid", "dense", "bm25")
GOAL_MS = 20.0


def load_squad(path: Path, removed_path: Path, limit: int | None) -> tuple[list, list, dict]:
    """(paragraphs [(source, title, context)], questions [(id, question, source)], info)."""
    data = json.loads(path.read_text())
    removed_doc = json.loads(removed_path.read_text())
    # {"canary": ..., "removed": {question_id: [answers]}}
    removed = set(removed_doc["removed"]) if isinstance(removed_doc, dict) else set(removed_doc)
    paragraphs, questions = [], []
    all_ids, skipped = 0, 0
    for article in data["data"]:
        title = article["title"]
        for i, para in enumerate(article["paragraphs"]):
            if limit is not None and len(paragraphs) >= limit:
                break
            source = f"squad/{title}/{i}"
            paragraphs.append((source, title, para["context"]))
            for qa in para["qas"]:
                all_ids += 1
                if qa["id"] in removed:
                    skipped += 1
                    continue
                questions.append((qa["id"], qa["question"], source))
    info = {
        "version": data.get("version"),
        "articles": len({t for _, t, _ in paragraphs}),
        "paragraphs": len(paragraphs),
        "questions_in_file": all_ids,
        "removed_ids_listed": len(removed),
        "removed_ids_skipped": skipped,
        "questions_kept": len(questions),
        "identical_paragraph_texts": sum(
            n - 1 for n in Counter(c for _, _, c in paragraphs).values() if n > 1),
    }
    return paragraphs, questions, info


def rank_of(hits: list, relevant: set[str]) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if hit.chunk.source in relevant:
            return rank
    return None


def quality(ranks: list[int | None], k: int) -> dict:
    """Mean Recall@1, @5, @k and MRR@k of the questions (each with one relevant paragraph,
    found at these ranks), keyed as retriever.metrics keys them: "recall@1", "mrr@10"."""
    recall_ks = list(dict.fromkeys((1, 5, k)))
    means = mean_scores([score_rank(r, recall_ks, k) for r in ranks])
    return {key: round(value, 4) for key, value in means.items()}


def profile_hybrid(service: Lectern, timed: TimedEmbedder, queries: list[str],
                   top_k: int) -> dict:
    """Time each stage of a hybrid query on its own: where do the milliseconds go?"""
    import torch

    inner = timed.inner
    model = inner.model
    index, bm25, store = service.corpus.index, service.corpus.bm25, service.store
    hybrid = service.corpus.retriever("hybrid")
    depth = max(hybrid.candidates, top_k)
    onnx = getattr(inner, "_onnx", None)  # the onnxruntime backend, when it is in use
    stages: dict[str, list[float]] = {k: [] for k in (
        "embed_query",
        *(("  onnx: tokenize", "  onnx: session.run") if onnx is not None else ()),
        "  torch reference: tokenize", "  torch reference: forward",
        "faiss_search", "store_fetch",
        "bm25_retrieve", "  bm25 tokenize", "  bm25 get_scores",
        "rrf_fusion", "hybrid_total")}
    clock = time.perf_counter
    # sentence-transformers 6 renamed tokenize() to preprocess()
    prep = getattr(model, "preprocess", None) or model.tokenize
    for q in queries:
        t = clock()
        vec = inner.embed_query(q)
        stages["embed_query"].append(clock() - t)
        if onnx is not None:
            t = clock()
            enc = onnx.tokenizer([q], padding=True, truncation=True,
                                 max_length=onnx.max_length, return_tensors="np")
            feeds = {n: enc[n].astype(np.int64) for n in onnx.names}
            stages["  onnx: tokenize"].append(clock() - t)
            t = clock()
            onnx.session.run(None, feeds)
            stages["  onnx: session.run"].append(clock() - t)
        t = clock()
        features = prep([q])
        stages["  torch reference: tokenize"].append(clock() - t)
        t = clock()
        with torch.inference_mode():
            model.forward(features)
        stages["  torch reference: forward"].append(clock() - t)
        t = clock()
        ids, _ = index.search(vec, depth)
        stages["faiss_search"].append(clock() - t)
        t = clock()
        store.get_chunks(ids.tolist())
        stages["store_fetch"].append(clock() - t)
        t = clock()
        sparse = bm25.retrieve(q, depth)
        stages["bm25_retrieve"].append(clock() - t)
        t = clock()
        terms = bm25.terms(q)
        stages["  bm25 tokenize"].append(clock() - t)
        t = clock()
        if terms:
            bm25._current().index.get_scores(terms)
        stages["  bm25 get_scores"].append(clock() - t)
        # Fusion alone, on the lists just produced (same arithmetic as HybridRetriever).
        dense_ids = ids.tolist()
        t = clock()
        fused: dict[int, float] = {}
        for rank, cid in enumerate(dense_ids, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (hybrid.rrf_k + rank)
        for rank, hit in enumerate(sparse, start=1):
            fused[hit.chunk.id] = fused.get(hit.chunk.id, 0.0) + 1.0 / (hybrid.rrf_k + rank)
        sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        stages["rrf_fusion"].append(clock() - t)
        t = clock()
        service.search(q, top_k=top_k, mode="hybrid")
        stages["hybrid_total"].append(clock() - t)
    out = {}
    for name, secs in stages.items():
        ms = [s * 1000 for s in secs]
        out[name.strip()] = {"indent": name != name.strip(),
                             "p50_ms": round(_common.percentile(ms, 50), 3),
                             "mean_ms": round(statistics.fmean(ms), 3)}
    out["candidates_per_retriever"] = depth
    out["encoder_backend"] = "onnxruntime" if onnx is not None else "torch"
    # Query embedding with one intra-op thread instead of the default, for comparison.
    threads = torch.get_num_threads()
    if onnx is not None and (os.cpu_count() or 1) > 1:
        from retriever.onnx_encoder import OnnxEncoder

        one = OnnxEncoder(inner.onnx_path, onnx.tokenizer, onnx.pooling, onnx.max_length,
                          threads=1)
        for q in queries[:20]:
            one.encode([q])
        secs = []
        for q in queries:
            t = clock()
            one.encode([q])
            secs.append(clock() - t)
        out["embed_query_1_thread"] = {"indent": False,
                                       "p50_ms": round(_common.percentile(secs, 50) * 1000, 3),
                                       "mean_ms": round(statistics.fmean(secs) * 1000, 3)}
    elif threads > 1:
        torch.set_num_threads(1)
        try:
            for q in queries[:20]:
                inner.embed_query(q)
            secs = []
            for q in queries:
                t = clock()
                inner.embed_query(q)
                secs.append(clock() - t)
        finally:
            torch.set_num_threads(threads)
        out["embed_query_1_thread"] = {"indent": False,
                                       "p50_ms": round(_common.percentile(secs, 50) * 1000, 3),
                                       "mean_ms": round(statistics.fmean(secs) * 1000, 3)}
    return out


def run(args: argparse.Namespace, data_dir: Path) -> dict:
    settings = Settings(data_dir=data_dir)
    if settings.store_path.exists():
        sys.exit(f"{settings.store_path} already exists; give an empty --data-dir")
    paragraphs, questions, squad_info = load_squad(args.squad, args.removed, args.limit)
    print(f"{len(paragraphs)} paragraphs, {len(questions)} questions; data dir {data_dir}",
          flush=True)

    t0 = time.perf_counter()
    real, encoder_info = real_embedder(settings)
    timed = TimedEmbedder(real)
    service = Lectern(settings, embedder=timed)
    service.warm_up()
    assert isinstance(timed, Embedder)  # after warm_up: the check reads `dimension`
    load_seconds = time.perf_counter() - t0
    real.embed_passages(["Warm-up passage about the history of Warsaw. " * 30] * 8)
    timed.reset()

    # --- indexing -----------------------------------------------------------------------
    ingestor = service.ingestor()
    statuses: Counter[str] = Counter()
    source_of: dict[str, str] = {}  # paragraph source -> the source its chunks are stored under
    duplicates, failures = [], []
    monitor = CpuMonitor()
    t0 = time.perf_counter()
    for n, (source, title, context) in enumerate(paragraphs, start=1):
        res = ingestor.ingest_text(source=source, title=title, text=context)
        statuses[res.status] += 1
        if res.status == "duplicate":
            twin = service.store.get_document(res.document_id)
            source_of[source] = twin.source if twin else source
            duplicates.append({"source": source, "same_as": source_of[source]})
        else:
            source_of[source] = source
        if res.status == "failed":
            failures.append({"source": source, "detail": res.detail})
        if n % 250 == 0:
            print(f"  indexed {n}/{len(paragraphs)} paragraphs "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    ingest_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    service.refresh()
    refresh_seconds = time.perf_counter() - t0
    index_seconds = ingest_seconds + refresh_seconds
    cpu_indexing = monitor.stop()
    embed_seconds, embedded = timed.passage_seconds, timed.passage_texts
    counts = service.counts()
    chunks_per_doc = Counter(c.source for c in service.store.all_chunks())
    print(f"indexed in {index_seconds:.1f}s: {counts.chunks} chunks "
          f"({embedded / embed_seconds:.1f} embeddings/s)", flush=True)

    # --- queries ------------------------------------------------------------------------
    rng = random.Random(args.seed)
    pool = [q for q in questions if q[2] in source_of]
    n_sample = min(args.queries, len(pool) - args.warmup)
    picked = rng.sample(pool, n_sample + args.warmup)
    warm, sample = picked[:args.warmup], picked[args.warmup:]
    for mode in args.modes:
        for _, q, _ in warm:
            service.search(q, top_k=args.top_k, mode=mode)
    # Interleave the modes query by query (rotating which goes first), so that a change
    # in machine load over the run hits every mode alike.
    secs: dict[str, list[float]] = {m: [] for m in args.modes}
    ranks: dict[str, list[int | None]] = {m: [] for m in args.modes}
    returned: dict[str, list[int]] = {m: [] for m in args.modes}
    monitor = CpuMonitor()
    for n, (_, q, source) in enumerate(sample):
        order = args.modes[n % len(args.modes):] + args.modes[:n % len(args.modes)]
        for mode in order:
            t = time.perf_counter()
            hits = service.search(q, top_k=args.top_k, mode=mode)
            secs[mode].append(time.perf_counter() - t)
            ranks[mode].append(rank_of(hits, {source_of[source]}))
            returned[mode].append(len(hits))
    cpu_queries = monitor.stop()
    modes: dict[str, dict] = {}
    for mode in args.modes:
        modes[mode] = {**latency_ms(secs[mode]), **quality(ranks[mode], args.top_k),
                       "mean_results": round(statistics.fmean(returned[mode]), 2),
                       "queries_with_no_results": sum(r == 0 for r in returned[mode])}
        m = modes[mode]
        print(f"  {mode:6} p50 {m['p50_ms']:.2f} ms  p95 {m['p95_ms']:.2f} ms  "
              f"R@1 {m['recall@1']:.3f}  R@5 {m['recall@5']:.3f}  "
              f"MRR@{args.top_k} {m[f'mrr@{args.top_k}']:.3f}", flush=True)

    profile = None
    if "hybrid" in args.modes and not args.no_profile:
        profile = profile_hybrid(service, timed, [q for _, q, _ in sample], args.top_k)

    hybrid_p50 = modes.get("hybrid", {}).get("p50_ms")
    return {
        "benchmark": "search",
        "goal": {"hybrid_p50_ms_max": GOAL_MS,
                 "met": None if hybrid_p50 is None else hybrid_p50 <= GOAL_MS},
        "modes": modes,
        "profile_hybrid": profile,
        "indexing": {
            "paragraphs": len(paragraphs),
            "statuses": dict(statuses),
            "duplicates": duplicates,
            "failures": failures,
            "chunks": counts.chunks,
            "paragraphs_split_into_several_chunks": sum(n > 1 for n in chunks_per_doc.values()),
            "max_chunks_per_paragraph": max(chunks_per_doc.values(), default=0),
            "seconds": round(index_seconds, 3),
            "ingest_text_seconds": round(ingest_seconds, 3),
            "refresh_seconds": round(refresh_seconds, 3),
            "embed_seconds": round(embed_seconds, 3),
            "chunks_embedded": embedded,
            "embeddings_per_second": round(embedded / embed_seconds, 2) if embed_seconds else None,
            "model_load_seconds": round(load_seconds, 3),
        },
        "cpu_during_indexing": cpu_indexing,
        "cpu_during_queries": cpu_queries,
        "counts": {"documents": counts.documents, "chunks": counts.chunks,
                   "vectors": counts.vectors, "faiss_indexed": counts.indexed,
                   "bm25": counts.bm25},
        "squad": squad_info,
        "queries": {"sampled": len(sample), "warmup_per_mode": len(warm), "seed": args.seed,
                    "top_k": args.top_k, "pool": len(pool)},
        "embedder": encoder_info,
        "settings": settings.model_dump(mode="json"),
        "run": {"squad": str(args.squad), "removed": str(args.removed), "limit": args.limit,
                "data_dir": str(data_dir), "temporary_data_dir": args.data_dir is None,
                "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "environment": environment(),
        "notes": [
            "latency: time.perf_counter around Lectern.search(q, top_k, mode), one query at "
            "a time, after a warm-up; modes interleaved per query (rotating order); hybrid "
            "and dense include the query embedding",
            "relevant = any chunk whose source is the question's own paragraph",
            "profile: each stage timed on its own over the same queries; stage sums need "
            "not equal the total (caches, timer overhead)",
        ],
    }


def markdown(res: dict) -> str:
    modes, ix, sq, qs = res["modes"], res["indexing"], res["squad"], res["queries"]
    env, r, k = res["environment"], res["settings"]["retrieval"], qs["top_k"]
    rows = [[m, f"{d['p50_ms']:.2f}", f"{d['p95_ms']:.2f}", f"{d['mean_ms']:.2f}",
             f"{d['recall@1']:.3f}", f"{d['recall@5']:.3f}", f"{d[f'mrr@{k}']:.3f}"]
            for m, d in modes.items()]
    goal = res["goal"]
    verdict = (
        "not measured (hybrid not run)" if goal["met"] is None else
        f"**{'met' if goal['met'] else 'NOT met'}**: hybrid p50 = "
        f"{modes['hybrid']['p50_ms']:.2f} ms (goal ≤ {goal['hybrid_p50_ms_max']:.0f} ms on "
        f"{env['cpu_count']} cores, query embedding included)"
    )
    dup = ix["statuses"].get("duplicate", 0)
    out = [
        "# Search benchmark",
        "",
        f"SQuAD v{sq['version']} dev: {ix['paragraphs']} paragraphs of {sq['articles']} "
        f"articles indexed with `ingest_text`; {qs['sampled']} questions sampled (seed "
        f"{qs['seed']}) from {qs['pool']} ({sq['removed_ids_skipped']} removed ids skipped), "
        f"{qs['warmup_per_mode']} warm-up queries per mode, top_k={k}, "
        f"candidates={r['candidates']}, rrf_k={r['rrf_k']}, index={r['index_type']}, "
        f"encoder backend {res['embedder'].get('backend', 'torch')}. "
        f"{env['date']}, Python {env['python']}, torch {env['torch']} "
        f"({env['torch_threads']} threads), faiss {env['faiss']}, {env['cpu_count']} CPUs "
        f"({env['cpu_model']}).",
        "",
        table(["mode", "p50 ms", "p95 ms", "mean ms", "Recall@1", "Recall@5", f"MRR@{k}"], rows),
        "",
        f"Goal hybrid p50 ≤ {goal['hybrid_p50_ms_max']:.0f} ms: {verdict}.",
        "",
        table(["indexing", "value"], [
            ["paragraphs (added / duplicate / failed)",
             f"{ix['paragraphs']} ({ix['statuses'].get('added', 0)} / {dup} / "
             f"{len(ix['failures'])})"],
            ["identical paragraph texts (de-duplicated by content hash)", dup],
            ["chunks", ix["chunks"]],
            ["paragraphs split into more than one chunk",
             f"{ix['paragraphs_split_into_several_chunks']} (max "
             f"{ix['max_chunks_per_paragraph']} chunks)"],
            ["indexing time, total (s)", f"{ix['seconds']:.1f}"],
            ["  of which embedding (s)", f"{ix['embed_seconds']:.1f}"],
            ["  of which index refresh, FAISS + BM25 (s)", f"{ix['refresh_seconds']:.2f}"],
            ["embeddings/s", ix["embeddings_per_second"]],
        ]),
    ]
    notes = []
    for what, key in (("indexing", "cpu_during_indexing"),
                      ("the timed queries", "cpu_during_queries")):
        share = res[key].get("other_processes_share_of_capacity")
        if share is not None:
            notes.append(f"{share:.0%} during {what}")
    if notes:
        out += ["", "Other processes' share of the machine's CPU capacity: " + ", ".join(notes)
                + " (above a few % the timings are inflated by contention)."]
    prof = res["profile_hybrid"]
    if prof:
        stage_rows = [[("↳ " if d["indent"] else "") + name.replace("_", " "),
                       f"{d['p50_ms']:.2f}", f"{d['mean_ms']:.2f}"]
                      for name, d in prof.items() if isinstance(d, dict)]
        out += ["", f"Hybrid query, stage by stage ({qs['sampled']} queries, "
                f"{prof['candidates_per_retriever']} candidates per retriever, query encoder on "
                f"{prof.get('encoder_backend', '?')}; ↳ rows are parts of, or alternatives to, "
                "the row above, each measured separately):", "",
                table(["stage", "p50 ms", "mean ms"], stage_rows)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 JSON")
    p.add_argument("--removed", type=Path, default=REMOVED, help="question ids to skip")
    p.add_argument("--limit", type=int, default=None,
                   help="index only the first N paragraphs (quick run)")
    p.add_argument("--queries", type=int, default=500, help="questions to time per mode")
    p.add_argument("--warmup", type=int, default=20, help="warm-up queries per mode")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--no-profile", action="store_true", help="skip the hybrid stage profile")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="empty data dir to use (default: a fresh temporary one, removed after)")
    p.add_argument("--out-dir", type=Path, default=_common.RESULTS_DIR,
                   help="where search.json / search.md go")
    args = p.parse_args(argv)
    if args.data_dir is not None:
        res = run(args, args.data_dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="lectern-bench-search-") as tmp:
            res = run(args, Path(tmp))
    md = markdown(res)
    js_path, md_path = write_results("search", res, md, args.out_dir)
    print()
    print(md)
    print(f"\nwrote {js_path} and {md_path}")


if __name__ == "__main__":
    main()
