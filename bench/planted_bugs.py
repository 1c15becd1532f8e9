"""Plant the five bugs that once passed the whole suite, one at a time, and show the
tests that now fail on each (issue "Tests that catch bugs").

    python bench/planted_bugs.py        # writes bench/results/planted-bugs.md

Each bug is planted in a scratch git worktree of HEAD (the work tree is never touched),
the tests meant to catch it are run, and the file is restored before the next plant.
"""
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

PLANTS = [
    ("service always serves the shipped reranker", "api/service.py",
     "    folder = prepare.reranker(settings, shipped=SHIPPED_RERANKER)\n",
     "    folder = SHIPPED_RERANKER\n",
     ["tests/retriever/test_reranker.py"]),
    ("search returns [] whenever no reranker is loaded", "retriever/corpus.py",
     "            return retriever.retrieve(query, k, filters), 0.0\n",
     "            return [], 0.0\n",
     ["tests/retriever/test_reranker.py", "tests/api"]),
    ("one rate-limit bucket for all clients, hits never expire", "api/security.py",
     '        client = request.client.host if request.client else "unknown"\n',
     '        client = "everyone"\n        now0 = 0.0  # planted\n',
     ["tests/api/test_security.py", "tests/api/test_security_unit.py", "tests/api/test_app.py"]),
    ("FaissIndex.load skips its count and refine checks", "retriever/faiss_index.py",
     "        problem = _disagreement(index, refine, self.pq_refine, meta.get(\"count\"), "
     "trailing)\n",
     "        problem = None\n",
     ["tests/retriever/test_faiss_index.py", "tests/retriever/test_faiss_index_parameters.py"]),
    ("the nothing-retrieved abstention deleted from ask/ask_stream", "api/service.py",
     "        if not passages:  # nothing retrieved: no model call, an honest abstention\n"
     "            timings.total_ms = elapsed_ms(start)\n"
     "            return AskResult(Answer(IDK, [], True), [], timings)\n",
     "",
     ["tests/api"]),
]



def main() -> int:
    scratch = Path(tempfile.mkdtemp(prefix="lectern-plant-"))
    work = scratch / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(work), "HEAD"], cwd=ROOT,
                   check=True, capture_output=True)
    for shared in ("var/models", ".cache/test-models"):  # converted models, not rebuilt
        if (ROOT / shared).exists():
            (work / shared).parent.mkdir(parents=True, exist_ok=True)
            (work / shared).symlink_to(ROOT / shared)
    rows, ok = [], True
    try:
        for name, rel, old, new, tests in PLANTS:
            path = work / rel
            text = path.read_text()
            if old not in text:
                raise SystemExit(f"{rel} changed: the plant for {name!r} no longer applies")
            planted = text.replace(old, new)
            if "hits never expire" in name:
                planted = planted.replace(
                    "            while hits and now - hits[0] >= self.window_s:\n"
                    "                hits.popleft()\n", "")
            path.write_text(planted)
            try:
                run = subprocess.run(
                    [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=work,
                    capture_output=True, text=True,
                    env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CI": "true"},
                )
            finally:
                path.write_text(text)
            lines = run.stdout.splitlines()
            failed = [ln.split(" - ")[0].removeprefix("FAILED ") for ln in lines
                      if ln.startswith("FAILED")]
            ok &= bool(failed)
            rows.append((name, rel, " ".join(tests), lines[-1] if lines else "no output",
                         failed[:12]))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=ROOT,
                       capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    out = [
        "# Planted bugs",
        "",
        f"`python bench/planted_bugs.py`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, on "
        f"{head}. "
        "Each bug planted alone in a scratch worktree; a row passes when a test fails.",
        "",
        "| planted bug | file | tests run | outcome | first failing tests |",
        "|---|---|---|---|---|",
    ]
    for name, rel, tests, outcome, failed in rows:
        out.append(f"| {name} | `{rel}` | `{tests}` | {outcome} | "
                   + "<br>".join(f"`{f}`" for f in failed) + " |")
    page = "\n".join(out) + "\n"
    (ROOT / "bench" / "results" / "planted-bugs.md").write_text(page)
    print(page)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
