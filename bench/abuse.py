"""The hardening figures of issue 15, measured against a real `lectern serve` on loopback.

    python bench/abuse.py [--rounds 3] [--big-paragraphs 36000] [--slow-paragraphs 30000]
                          [--name abuse]

Each server gets a temporary data dir holding the sample corpus (`lectern ingest
samples/corpus` once, then copied), models from var/models, a free loopback port, the
admin token it generates, and default settings otherwise (any LECTERN_* variable set
here still applies, and is recorded). The checks:

1. a DOCX zip bomb (8 MiB of one-letter paragraphs) uploaded with the token: the time to
   the answer, its status and error; then a big DOCX under every cap (--big-paragraphs
   varied paragraphs): how long a legitimate big file takes, or that the parse timeout
   fires;
2. a 300 MB multipart upload streamed from a raw socket without a token, and with a wrong
   one (default caps: only the token can refuse it), then with the token to a server whose
   upload cap is 100 MiB: the bytes the client got to send before the answer (its socket
   buffer included, so at least what the server read), the server's own reads
   (/proc/<pid>/io rchar), status, time;
3. --rounds times: SIGTERM while the server parses a slow upload (after one small upload it
   keeps): seconds to exit, the exit code, parse processes left alive, files left in
   uploads/; then a restart (up to its first answer: the start-up sweep runs before it)
   and the files left after it.

Writes bench/results/<name>.json and .md (check, figure, bound, met?, and the share of the
machine's CPU other processes took meanwhile).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import _server
import httpx
from _common import CpuMonitor, environment, table, write_results

MIB = 2**20
HUGE = 300 * MIB
CHUNK = 64 * 1024
BOUNDARY = "lectern-abuse-boundary"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PARAGRAPH = b"<w:p><w:r><w:t>x</w:t></w:r></w:p>"
WORDS = [
    "students", "may", "retake", "an", "exam", "twice", "each", "year", "unless", "the",
    "board", "decides", "otherwise", "and", "late", "fees", "apply", "to", "every",
    "registration", "after", "the", "first", "week", "of", "the", "autumn", "term",
]

# -- files ----------------------------------------------------------------------------


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=12)).capitalize() + "." for _ in range(count)]


def docx_with_body(body: bytes) -> bytes:
    """A real DOCX (python-docx's template) whose <w:body> holds `body`."""
    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    out = io.BytesIO()
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED,
                                                           compresslevel=9) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                head, _, tail = data.partition(b"<w:body>")
                data = head + b"<w:body>" + body + tail
            dst.writestr(item.filename, data)
    return out.getvalue()


def inflation(data: bytes) -> dict:
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml")
    return {"file_bytes": len(data), "document_xml_bytes": info.file_size,
            "document_xml_ratio": round(info.file_size / info.compress_size, 1)}


# -- servers --------------------------------------------------------------------------


@contextlib.contextmanager
def serving(data: Path, **settings: str) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """A ready server on `data`; yields (process, url, admin token)."""
    with _server.serving(data, **settings) as (proc, url):
        yield proc, url, (data / "admin-token").read_text().strip()


def rchar(pid: int) -> int:
    """Bytes the process got from read()/recv() calls, sockets included."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError(f"no rchar in /proc/{pid}/io")


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `pid`: a pid alone may be reused."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in map(int, (task / "children").read_text().split()):
                    found.append((child, _started(child)))
                    todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return ""


def _started(pid: int) -> str:
    """The process's start time, "" once it is gone (or a zombie: it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] == "Z" else fields[19]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def upload(url: str, token: str, name: str, data: bytes, mime: str, timeout: float) -> dict:
    t0 = time.monotonic()
    r = httpx.post(f"{url}/api/v1/documents", files={"files": (name, data, mime)},
                   headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    out = {"seconds": round(time.monotonic() - t0, 2), "status": r.status_code}
    try:
        body = r.json()
    except ValueError:  # not the JSON shape every answer should have
        return {**out, "text": r.text[:300]}
    if "error" in body:
        out["error"] = body["error"]
    else:
        out["result"] = body["results"][0]
    return out


# -- checks ---------------------------------------------------------------------------


def huge_upload(url: str, pid: int, token: str | None) -> dict:
    """Stream a 300 MB multipart upload from a raw socket until the server answers."""
    host, port = url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"huge.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
    head = (f"POST /api/v1/documents HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Content-Type: "
            f"multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {HUGE}\r\n\r\n")
    read0, t0 = rchar(pid), time.monotonic()
    conn = socket.create_connection((host, int(port)), timeout=15)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
    conn.sendall(head.encode() + part)
    conn.setblocking(False)
    sent, zeros, ended = len(part), bytes(CHUNK), "the server answered"
    with conn:
        while sent < HUGE:
            readable, writable, _ = select.select([conn], [conn], [], 15)
            if readable:
                break
            if not writable:
                ended = "the server stopped reading, without an answer, for 15 s"
                break
            try:
                sent += conn.send(zeros[: HUGE - sent])
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                ended = "the server closed the connection"
                break
        else:
            ended = "the client sent all of it"
        conn.settimeout(15)
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while b"\r\n\r\n" not in answer and (chunk := conn.recv(65536)):
                answer += chunk
    seconds = time.monotonic() - t0
    time.sleep(0.5)  # the server's last reads of the connection, if any
    head_out, _, body = answer.partition(b"\r\n\r\n")
    status_line = head_out.split(b"\r\n", 1)[0].decode(errors="replace")
    return {"token": "wrong" if token == "wrong-token-000000" else bool(token),
            "body_bytes_declared": HUGE, "body_bytes_client_sent": sent,
            "server_bytes_read_rchar": rchar(pid) - read0, "seconds": round(seconds, 3),
            "status_line": status_line, "ended": ended,
            "connection_close": b"connection: close" in head_out.lower(),
            "body_start": body[:300].decode(errors="replace")}


def shutdown_round(data: Path, k: int, slow: bytes) -> dict:
    """SIGTERM mid-ingest, then a restart; what each left behind."""
    uploads = data / "uploads"
    log_from = _server.log_of(data).stat().st_size if _server.log_of(data).exists() else 0
    proc, url = _server.start(data)
    try:
        ready_s = _server.wait_answering(proc, url, ready=True)
        token = (data / "admin-token").read_text().strip()
        kept = upload(url, token, f"kept-{k}.txt", f"Round {k}: fees are due in May.".encode(),
                      "text/plain", 300)
        answered: list[dict] = []

        def send() -> None:
            try:
                answered.append(upload(url, token, "handbook.txt", slow, "text/plain", 300))
            except httpx.HTTPError as exc:
                answered.append({"exception": type(exc).__name__})

        sender = threading.Thread(target=send, daemon=True)
        t_upload = time.monotonic()
        sender.start()
        deadline = t_upload + 60
        while not (uploads / "handbook.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        in_uploads = (uploads / "handbook.txt").exists()
        time.sleep(1.0)  # the parse is under way
        before = files_under(uploads)
        children = descendants(proc.pid)
        answered_before_sigterm = bool(answered)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)  # a failure bound; the figure is the time taken
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        exit_s = time.monotonic() - t_term
        sender.join(timeout=30)
        def still(pid: int, started: str) -> bool:
            return bool(started) and _started(pid) == started

        # multiprocessing's resource tracker ends when it reads its parent's exit; a
        # process of the server's still there 5 s after it exited is left behind.
        left_at_exit = [(pid, _cmdline(pid)) for pid, s in children if still(pid, s)]
        settle = time.monotonic() + 5
        while any(still(p, s) for p, s in children) and time.monotonic() < settle:
            time.sleep(0.1)
        alive = [pid for pid, started in children if still(pid, started)]
        for pid in alive:  # ours: the server's parse processes; end them by their id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        left = files_under(uploads)
    finally:
        _server.stop(proc)
    proc2, url2 = _server.start(data)
    try:
        restart_s = _server.wait_answering(proc2, url2, ready=False)
        after_restart = files_under(uploads)
    finally:
        _server.stop(proc2)
    expected = [f"kept-{i}.txt" for i in range(1, k + 1)]
    slow_answer = answered[0] if answered else None
    out = {
        "round": k, "ready_seconds": ready_s, "kept_upload": kept,
        "slow_upload_reached_uploads": in_uploads,
        "sigterm_after_upload_started_s": round(t_term - t_upload, 2),
        "answered_before_sigterm": answered_before_sigterm,
        "uploads_at_sigterm": before, "processes_below_server_at_sigterm": len(children),
        "exit_seconds": round(exit_s, 2), "exit_code": proc.returncode,
        "processes_left_alive": len(alive),
        "processes_still_running_at_exit": left_at_exit,
        "slow_upload_answer": slow_answer,
        "uploads_left": left, "uploads_expected": expected,
        "restart_seconds_to_first_answer": restart_s, "uploads_after_restart": after_restart,
        "met": (exit_s <= 10 and not alive and left == expected and after_restart == expected
                and in_uploads and not answered_before_sigterm),
    }
    if not out["met"] or (slow_answer or {}).get("status", 0) >= 500:
        with _server.log_of(data).open("rb") as f:  # what the server said about it
            f.seek(log_from)
            out["server_log_tail"] = f.read().decode(errors="replace").splitlines()[-60:]
    return out


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**NO**")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big-paragraphs", type=int, default=36_000)
    ap.add_argument("--slow-paragraphs", type=int, default=30_000)
    ap.add_argument("--name", default="abuse")
    args = ap.parse_args()
    whole = CpuMonitor()
    out: dict = {"environment": environment(), "lectern_env": sorted(
        k for k in os.environ if k.startswith("LECTERN_") and "TOKEN" not in k)}
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="lectern-abuse-") as tmp:
        work = Path(tmp)
        template = work / "template"
        _server.ingest_samples(template)

        # 1 and 2: one server at default settings.
        cpu = CpuMonitor()
        data = work / "a"
        shutil.copytree(template, data)
        bomb = docx_with_body(PARAGRAPH * (8 * MIB // len(PARAGRAPH)))
        big = docx_with_body(b"".join(f"<w:p><w:r><w:t>{s}</w:t></w:r></w:p>".encode()
                                      for s in sentences(args.big_paragraphs)))
        with serving(data) as (proc, url, token):
            unauth = [huge_upload(url, proc.pid, t) for t in (None, "wrong-token-000000")]
            bomb_run = {**inflation(bomb), **upload(url, token, "bomb.docx", bomb, DOCX, 60)}
            bomb_run["uploads_left"] = files_under(data / "uploads")
            big_run = {"paragraphs": args.big_paragraphs, **inflation(big),
                       **upload(url, token, "big.docx", big, DOCX, 1800)}
        load_a = cpu.stop()

        cpu = CpuMonitor()
        data = work / "b"
        data.mkdir()
        # Ready, as server A was: during its warm-up its reads of model files would be
        # counted in rchar with those of the socket.
        capped = serving(data, LECTERN_API__MAX_UPLOAD_REQUEST_MB="100")
        with capped as (proc, url, token):
            over_cap = huge_upload(url, proc.pid, token)
        load_b = cpu.stop()

        # 3: one data dir through every round, so earlier rounds' uploads must stay.
        cpu = CpuMonitor()
        data = work / "c"
        shutil.copytree(template, data)
        slow = "\n\n".join(sentences(args.slow_paragraphs)).encode()
        rounds = [shutdown_round(data, k, slow) for k in range(1, args.rounds + 1)]
        load_c = cpu.stop()
    out.update(bomb=bomb_run, big_docx=big_run, huge_upload=[*unauth, over_cap],
               shutdown_rounds=rounds, slow_upload_bytes=len(slow),
               cpu={"checks_1_2": load_a, "check_2_over_cap": load_b, "check_3": load_c,
                    "whole_run": whole.stop()})

    def share(load: dict) -> str:
        return f"{load.get('other_processes_share_of_capacity', 0):.1%}"

    err = bomb_run.get("error", {})
    bomb_ok = bomb_run["seconds"] <= 5 and 400 <= bomb_run["status"] < 500 and bool(err)
    rows.append(["1 zip-bomb DOCX refused",
                 f"{bomb_run['file_bytes'] / 1024:.0f} KB, document.xml "
                 f"{bomb_run['document_xml_bytes'] / MIB:.1f} MiB "
                 f"({bomb_run['document_xml_ratio']}:1): {bomb_run['status']} in "
                 f"{bomb_run['seconds']} s, \"{err.get('message', '')}\"; uploads left: "
                 f"{bomb_run['uploads_left'] or 'none'}",
                 "≤ 5 s, a clear error", _mark(bomb_ok), share(load_a)])
    res = big_run.get("result") or {}
    what = (f"{res.get('status')}, {res.get('chunks')} chunks" if res
            else f"\"{big_run['error']['message']}\"")
    rows.append(["1 big DOCX under the caps", f"{args.big_paragraphs:,} paragraphs, "
                 f"{big_run['file_bytes'] / MIB:.1f} MB ({big_run['document_xml_bytes'] / MIB:.1f}"
                 f" MiB XML, {big_run['document_xml_ratio']}:1): {big_run['status']} in "
                 f"{big_run['seconds']} s, {what}",
                 "none (parse timeout 120 s)", _mark(None), share(load_a)])
    for run, label, load in ((unauth[0], "no token", load_a), (unauth[1], "wrong token", load_a),
                             (over_cap, "token, 100 MiB cap", load_b)):
        want = "401" if label != "token, 100 MiB cap" else "413"
        ok = (run["server_bytes_read_rchar"] < MIB and run["body_bytes_client_sent"] < HUGE
              and want in run["status_line"])
        rows.append([f"2 300 MB upload, {label}",
                     f"{run['status_line']} after {run['seconds'] * 1000:.1f} ms; client sent "
                     f"{run['body_bytes_client_sent']:,} B, server read "
                     f"{run['server_bytes_read_rchar']:,} B (rchar)",
                     f"{want}, < 1 MiB read", _mark(ok), share(load)])
    def got(answer: dict | None) -> str:
        if answer is None:
            return "no answer"
        if "exception" in answer:
            return answer["exception"]
        body = (f"\"{answer['error']['message']}\"" if "error" in answer
                else f"not JSON: {answer.get('text', '')!r}" if "text" in answer else "a result")
        return f"{answer['status']}, {body}"

    for r in rounds:
        rows.append([f"3 SIGTERM mid-ingest, round {r['round']}",
                     f"exit {r['exit_seconds']} s after SIGTERM "
                     f"({r['sigterm_after_upload_started_s']} s into the upload), code "
                     f"{r['exit_code']}; processes left 5 s after it "
                     f"{r['processes_left_alive']} (at exit "
                     f"{len(r['processes_still_running_at_exit'])}); uploads "
                     f"left {r['uploads_left']}, after restart {r['uploads_after_restart']}; "
                     f"the upload in flight got: {got(r['slow_upload_answer'])}",
                     "≤ 10 s, only earlier uploads", _mark(r["met"]), share(load_c)])
    worst = max(r["exit_seconds"] for r in rounds)
    rows.append(["3 SIGTERM, max of rounds", f"{worst} s", "≤ 10 s", _mark(worst <= 10),
                 share(load_c)])
    md = (f"# Abuse: issue 15's hardening figures against `lectern serve` on loopback\n\n"
          f"`python bench/abuse.py --rounds {args.rounds} --big-paragraphs "
          f"{args.big_paragraphs} --slow-paragraphs {args.slow_paragraphs}`; default settings "
          f"but the 100 MiB upload cap where said; {os.cpu_count()} CPUs; "
          f"{out['environment']['date']}. Bytes the client sent include its socket buffer; "
          "the server's reads are its /proc rchar over the request.\n\n"
          + table(["check", "figure", "bound", "met?", "other processes' CPU share"], rows)
          + f"\n\nOther processes took {share(out['cpu']['whole_run'])} of the machine's CPU "
          f"over the whole run ({out['cpu']['whole_run']['wall_seconds']} s; 1-min load "
          f"average {out['cpu']['whole_run']['loadavg_1m_at_end']} at the end).\n")
    write_results(args.name, out, md)
    print(md)


if __name__ == "__main__":
    main()
