"""Ingestion benchmark: every PDF and HTML file under the shared docs corpus, real encoder.

    python bench/ingestion.py              # full run (12 PDFs + 144 HTML pages)
    python bench/ingestion.py --limit 2    # quick run: the first 2 files of each format

Goes through `Lectern.ingest` with default settings in a fresh temporary data dir. The
encoder is the one `Lectern.warm_up` would build, wrapped in a timer, and the parse
(the wait for the parse worker process, as the pipeline waits for it), the store writes
and the index refresh are timed in place, so the wall time splits into parse / chunk /
embed / store / refresh, and the refresh into the sentence vectors it embeds
(lectern/sentences.py) and the rest (FAISS, BM25). Writes
bench/results/ingest.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common
from _common import (
    CpuMonitor,
    TimedEmbedder,
    environment,
    real_embedder,
    table,
    write_results,
)

from api.service import Lectern
from ingest.pipeline import FileResult, expand
from lectern.protocols import Embedder
from lectern.settings import Settings

DEFAULT_DOCS = Path("/work/shared/data/docs")
FORMAT_OF = {".pdf": "pdf", ".html": "html", ".htm": "html"}


class Stopwatch:
    """Wraps a callable and accumulates the seconds spent in it."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def pdf_page_count(path: Path) -> int | None:
    try:
        from pypdf import PdfReader

        return len(PdfReader(str(path)).pages)
    except Exception:  # only a cross-check; never fail the benchmark on it
        return None


def select_files(docs: Path, limit: int | None) -> list[Path]:
    files = list(expand([docs]))
    if limit is None:
        return files
    kept, seen = [], defaultdict(int)
    for f in files:
        fmt = FORMAT_OF.get(f.suffix.lower(), f.suffix.lower())
        if seen[fmt] < limit:
            kept.append(f)
            seen[fmt] += 1
    return kept


def run(args: argparse.Namespace, data_dir: Path) -> dict:
    settings = Settings(data_dir=data_dir)
    if settings.store_path.exists():
        sys.exit(f"{settings.store_path} already exists; give an empty --data-dir")
    files = select_files(args.docs, args.limit)
    if not files:
        sys.exit(f"no supported files under {args.docs}")
    print(f"{len(files)} files under {args.docs}; data dir {data_dir}", flush=True)

    t0 = time.perf_counter()
    real, encoder_info = real_embedder(settings)
    timed = TimedEmbedder(real)
    service = Lectern(settings, embedder=timed)
    service.warm_up()
    # (after warm_up: a runtime Protocol check reads `dimension`, which needs the model)
    assert isinstance(timed, Embedder)
    load_seconds = time.perf_counter() - t0
    # The first forward passes pay one-off setup (oneDNN kernels, allocator); keep them off
    # the clock so embeddings/s is the steady rate.
    t0 = time.perf_counter()
    real.embed_passages(["Warm-up passage about installing packages with apt. " * 30] * 8)
    encoder_warmup_seconds = time.perf_counter() - t0

    # Import the parsers before the clock starts: a one-off cost, reported on its own.
    t0 = time.perf_counter()
    from ingest.partition import _quiet_unstructured

    _quiet_unstructured()
    for module in ("unstructured.partition.pdf", "unstructured.partition.html"):
        importlib.import_module(module)
    import_seconds = time.perf_counter() - t0

    # Time the stages in place (instance / module attributes only; nothing on disk changes).
    # The ingestor parses through the service's worker processes (api.service.ingestor).
    parse = Stopwatch(service._parsers.parse)
    service._parsers.parse = parse
    store_write = Stopwatch(service.store.upsert_document)
    service.store.upsert_document = store_write
    refresh = Stopwatch(service.refresh)
    service.refresh = refresh
    timed.reset()

    per_file: list[dict] = []
    last = [0.0]
    marks = {"parse": 0.0, "embed": 0.0, "store": 0.0}

    def on_file(result: FileResult) -> None:
        now = time.perf_counter()
        path = Path(result.path)
        fmt = FORMAT_OF.get(path.suffix.lower(), path.suffix.lower())
        row = {
            "file": str(path.relative_to(args.docs) if path.is_relative_to(args.docs) else path),
            "format": fmt,
            "status": result.status,
            "chunks": result.chunks,
            "pages_reported": result.pages,
            "pages": (1 if result.status != "failed" else 0) if fmt == "html" else result.pages,
            "seconds": round(now - last[0], 3),
            "parse_seconds": round(parse.seconds - marks["parse"], 3),
            "embed_seconds": round(timed.passage_seconds - marks["embed"], 3),
            "store_seconds": round(store_write.seconds - marks["store"], 3),
            "detail": result.detail,
        }
        if fmt == "pdf":
            row["pdf_pages_pypdf"] = pdf_page_count(path)
            now = time.perf_counter()  # the cross-check is not part of the file's time
        per_file.append(row)
        marks.update(parse=parse.seconds, embed=timed.passage_seconds, store=store_write.seconds)
        last[0] = now
        mark = "FAILED " + result.detail if result.status == "failed" else result.status
        print(f"  [{len(per_file):3}/{len(files)}] {row['file']}: {result.chunks} chunks, "
              f"{row['pages']} pages, {row['seconds']:.2f}s {mark}", flush=True)

    monitor = CpuMonitor()
    t_start = time.perf_counter()
    last[0] = t_start
    report = service.ingest(files, on_file)
    wall = time.perf_counter() - t_start
    cpu = monitor.stop()
    # pypdf page counting ran inside the callback; take it out of the wall time.
    loop_seconds = sum(r["seconds"] for r in per_file)
    check_seconds = (wall - refresh.seconds) - loop_seconds
    wall -= max(check_seconds, 0.0)

    counts = service.counts()
    # Sanity: chunks whose embedded text (bounded heading + passage) is longer than the
    # encoder reads; the encoder silently truncates those.
    max_tokens = real.max_tokens
    texts = [c.model_text for c in service.store.all_chunks()]
    lengths = [len(ids) for ids in real.model.tokenizer(texts)["input_ids"]] if texts else []
    truncated = sum(n > max_tokens for n in lengths)
    # Chunk vectors are embedded file by file; the refresh after the ingest embeds the
    # chunks' sentences, through the same embedder.
    embed_s = sum(r["embed_seconds"] for r in per_file)
    sentence_s = timed.passage_seconds - embed_s
    parse_s = parse.seconds
    store_s = store_write.seconds
    refresh_s = refresh.seconds
    chunk_s = loop_seconds - parse_s - embed_s - store_s
    ok = [r for r in per_file if r["status"] != "failed"]
    pages = sum(r["pages"] for r in ok)
    chunks = sum(r["chunks"] for r in ok)

    formats: dict[str, dict] = {}
    for fmt in sorted({r["format"] for r in per_file}):
        rows = [r for r in per_file if r["format"] == fmt]
        good = [r for r in rows if r["status"] != "failed"]
        formats[fmt] = {
            "files": len(rows),
            "ok": len(good),
            "failed": [{"file": r["file"], "detail": r["detail"]} for r in rows
                       if r["status"] == "failed"],
            "statuses": {s: sum(r["status"] == s for r in rows)
                         for s in sorted({r["status"] for r in rows})},
            "pages": sum(r["pages"] for r in good),
            "chunks": sum(r["chunks"] for r in good),
            "seconds": round(sum(r["seconds"] for r in rows), 3),
            "parse_seconds": round(sum(r["parse_seconds"] for r in rows), 3),
            "embed_seconds": round(sum(r["embed_seconds"] for r in rows), 3),
            "store_seconds": round(sum(r["store_seconds"] for r in rows), 3),
        }
        if fmt == "pdf":
            formats[fmt]["pdf_pages_pypdf"] = sum(r.get("pdf_pages_pypdf") or 0 for r in rows)

    figures = {
        "files": len(per_file),
        "files_ok": len(ok),
        "files_failed": len(per_file) - len(ok),
        "pages": pages,
        "chunks": chunks,
        "chunks_embedded": timed.passage_texts,
        "wall_seconds": round(wall, 3),
        "parse_seconds": round(parse_s, 3),
        "chunk_seconds": round(chunk_s, 3),
        "parse_chunk_seconds": round(parse_s + chunk_s, 3),
        "embed_seconds": round(embed_s, 3),
        "store_write_seconds": round(store_s, 3),
        "index_refresh_seconds": round(refresh_s, 3),
        "refresh_sentence_embed_seconds": round(sentence_s, 3),
        "pages_per_second": round(pages / wall, 3),
        "chunks_per_second": round(chunks / wall, 3),
        "embeddings_per_second": round(timed.passage_texts / timed.passage_seconds, 2)
        if timed.passage_seconds else None,
        "count_tokens_seconds": round(timed.token_seconds, 3),
        "count_tokens_calls": timed.token_calls,
        "encoder_max_tokens": max_tokens,
        "chunks_over_encoder_max_tokens": truncated,
        "chunk_tokens_p50_p95_max": [int(_common.percentile(lengths, 50)),
                                     int(_common.percentile(lengths, 95)), max(lengths)]
        if lengths else None,
        "model_load_seconds": round(load_seconds, 3),
        "encoder_warmup_seconds": round(encoder_warmup_seconds, 3),
        "parser_import_seconds": round(import_seconds, 3),
        "pdf_page_check_seconds_excluded": round(max(check_seconds, 0.0), 3),
    }
    return {
        "benchmark": "ingest",
        "figures": figures,
        "formats": formats,
        "failures": [{"file": r["file"], "format": r["format"], "detail": r["detail"]}
                     for r in per_file if r["status"] == "failed"],
        "statuses": {s: report.count(s) for s in
                     ("added", "updated", "unchanged", "duplicate", "failed")},
        "cpu_during_ingest": cpu,
        "counts": {"documents": counts.documents, "chunks": counts.chunks,
                   "vectors": counts.vectors, "faiss_indexed": counts.indexed,
                   "bm25": counts.bm25},
        "embedder": {**encoder_info, **timed.stats()},
        "settings": settings.model_dump(mode="json"),
        "run": {"docs": str(args.docs), "limit": args.limit, "data_dir": str(data_dir),
                "temporary_data_dir": args.data_dir is None,
                "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "environment": environment(),
        "files": per_file,
        "notes": [
            "pages: PDF pages = FileResult.pages (pages that yielded text); "
            "every HTML file counts as 1 page",
            "wall_seconds = the Lectern.ingest call (parse + chunk + embed + store + index "
            "refresh), excluding model load, one warm-up batch of 8 passages, parser imports "
            "and the pypdf page cross-check",
            "chunk_seconds = per-file time minus parse, embed and store: token-aware "
            "chunking (incl. count_tokens), hashing and bookkeeping",
            "embeddings_per_second = chunks embedded / seconds inside embed_passages",
        ],
    }


def markdown(res: dict) -> str:
    f, env, fmts = res["figures"], res["environment"], res["formats"]
    s = res["settings"]["ingest"]
    rows = [
        ["files (ok / failed)", f"{f['files']} ({f['files_ok']} / {f['files_failed']})"],
        ["pages¹", f["pages"]],
        ["chunks", f["chunks"]],
        ["wall time, total (s)", f"{f['wall_seconds']:.1f}"],
        ["  parse + chunk (s)", f"{f['parse_chunk_seconds']:.1f}"],
        ["    parse: unstructured partition (s)", f"{f['parse_seconds']:.1f}"],
        ["    chunk: token-aware split, hashing (s)", f"{f['chunk_seconds']:.1f}"],
        ["  embedding (s)", f"{f['embed_seconds']:.1f}"],
        ["  store write, SQLite (s)", f"{f['store_write_seconds']:.2f}"],
        ["  index refresh (s)", f"{f['index_refresh_seconds']:.2f}"],
        ["    sentence vectors embedded (s)", f"{f['refresh_sentence_embed_seconds']:.2f}"],
        ["    FAISS, BM25 and the rest (s)",
         f"{f['index_refresh_seconds'] - f['refresh_sentence_embed_seconds']:.2f}"],
        ["pages/s", f"{f['pages_per_second']:.2f}"],
        ["chunks/s", f"{f['chunks_per_second']:.2f}"],
        ["embeddings/s²", f["embeddings_per_second"]],
        ["chunks longer than the encoder reads³",
         f"{f['chunks_over_encoder_max_tokens']} (> {f['encoder_max_tokens']} tokens)"],
        ["model load (s, not in wall time)", f"{f['model_load_seconds']:.1f}"],
    ]
    limit = f" (limit {res['run']['limit']} per format)" if res["run"]["limit"] else ""
    per_format = [
        [fmt, d["files"], len(d["failed"]), d["pages"], d["chunks"], f"{d['seconds']:.1f}",
         f"{d['parse_seconds']:.1f}", f"{d['embed_seconds']:.1f}",
         f"{d['pages'] / d['seconds']:.2f}" if d["seconds"] else "-"]
        for fmt, d in fmts.items()
    ]
    out = [
        "# Ingestion benchmark",
        "",
        f"{res['run']['docs']}{limit}"
        f" through `Lectern.ingest`, default settings (chunk_tokens={s['chunk_tokens']}, "
        f"overlap={s['chunk_overlap']}, pdf_strategy={s['pdf_strategy']}, "
        f"embed_batch_size={s['embed_batch_size']}), encoder "
        f"`{res['embedder']['fingerprint']}` on {res['embedder']['device']}"
        f" (backend {res['embedder'].get('backend', 'torch')}). "
        f"{env['date']}, Python {env['python']}, torch {env['torch']} "
        f"({env['torch_threads']} threads), faiss {env['faiss']}, {env['cpu_count']} CPUs.",
        "",
        table(["figure", "value"], rows),
        "",
        table(["format", "files", "failed", "pages¹", "chunks", "seconds", "parse s", "embed s",
               "pages/s"], per_format),
        "",
        "¹ PDF pages = pages that yielded text (FileResult.pages); each HTML file counts as "
        "1 page." + (f" pypdf counts {fmts['pdf']['pdf_pages_pypdf']} PDF pages in all."
                     if "pdf" in fmts else ""),
        "² texts embedded (chunks, then their sentences) / seconds inside "
        "`embed_passages` (batch size "
        f"{s['embed_batch_size']}).",
        "³ context text (title > section, then the passage) incl. [CLS]/[SEP], measured "
        "with the encoder's tokenizer; the encoder truncates these. Chunk length p50/p95/max: "
        f"{f['chunk_tokens_p50_p95_max']} tokens.",
        "",
    ]
    cpu = res["cpu_during_ingest"]
    share = cpu.get("other_processes_share_of_capacity")
    if share is not None:
        out += [f"Other processes used {share:.0%} of the machine's CPU capacity during the "
                f"ingest ({cpu['other_processes_cpu_seconds']:.0f} CPU-seconds)"
                + ("; the timings above are inflated by that contention." if share > 0.05
                   else "."), ""]
    if res["failures"]:
        out += ["**Failures:**", ""]
        out += [f"- `{x['file']}` ({x['format']}): {x['detail']}" for x in res["failures"]]
    else:
        out.append("Failures: none.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="folder to ingest")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N files of each format (quick run)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="empty data dir to use (default: a fresh temporary one, removed after)")
    p.add_argument("--out-dir", type=Path, default=_common.RESULTS_DIR,
                   help="where ingest.json / ingest.md go")
    args = p.parse_args(argv)
    args.docs = args.docs.resolve()
    if args.data_dir is not None:
        res = run(args, args.data_dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="lectern-bench-ingest-") as tmp:
            res = run(args, Path(tmp))
    md = markdown(res)
    js_path, md_path = write_results("ingest", res, md, args.out_dir)
    print()
    print(md)
    print(f"\nwrote {js_path} and {md_path}")


if __name__ == "__main__":
    main()
