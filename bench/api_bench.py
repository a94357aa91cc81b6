"""Load-test the API on loopback with wrk: check-cache hits, 100 KB and 2 MB uploads.

Starts real Redis and PostgreSQL (Debian's servers, on free ports), serves the API the way a
user runs it (``python -m ocrfleet_api`` with several uvicorn workers), seeds a tenant and a
processed document, then runs wrk against each scenario and records, per scenario:
requests/s, p50/p90/p99 latency, errors, the API's peak RSS, and where the CPU went (API
workers, PostgreSQL, Redis, wrk itself) — measured from each process's CPU time.

    python -m bench.api_bench [--duration 10] [--workers 2] [--connections 32]

Prints a table and saves JSON under bench/results/. Needs ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import redis
from ocrfleet_api import tables  # noqa: F401  (registers the API's tables on Base)
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev.localproc import PostgresServer, RedisServer, free_port
from PIL import Image

from ocrfleet import keys
from ocrfleet.results import PageResult, TextLine
from ocrfleet.store import Base, DocumentRow, ResultStore, make_engine

RESULTS = Path(__file__).parent / "results"
MASTER_KEY = "bench-signing-master-key-0123456789abcdef"

_LUA = r"""
-- The body is read from files; with BENCH_UNIQUE set, every request carries a different but valid
-- PNG: a tEXt chunk with a counter (and its CRC-32) goes after IHDR, so each upload is new content.
local function slurp(name)
  local f = io.open(name, "rb"); local data = f:read("*a"); f:close(); return data
end
local bit = require("bit")
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) == 1 then c = bit.bxor(bit.rshift(c, 1), 0xEDB88320) else c = bit.rshift(c, 1) end
  end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(crc_table[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8))
  end
  return bit.bxor(c, 0xFFFFFFFF)
end
local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 0xFF), bit.band(bit.rshift(n, 16), 0xFF),
                     bit.band(bit.rshift(n, 8), 0xFF), bit.band(n, 0xFF))
end

local unique = os.getenv("BENCH_UNIQUE") == "1"
local body, prefix, suffix
if unique then
  prefix = slurp(os.getenv("BENCH_BODY") .. ".prefix")
  suffix = slurp(os.getenv("BENCH_BODY") .. ".suffix")
else
  body = slurp(os.getenv("BENCH_BODY"))
end
local method = os.getenv("BENCH_METHOD")
local headers = {["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE"),
                 ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")}
local counter = 0
local thread_tag = ""

setup = function(thread)
  thread:set("tag", tostring(math.random(1, 2000000000)))
end

init = function(args)
  thread_tag = tag or tostring(math.random(1, 2000000000))
end

request = function()
  if not unique then
    return wrk.format(method, nil, headers, body)
  end
  counter = counter + 1
  local data = "tEXt" .. "ocrfleet-bench" .. "\0" .. thread_tag .. "-" .. counter
  local chunk = be32(#data - 4) .. data .. be32(crc32(data))
  return wrk.format(method, nil, headers, prefix .. chunk .. suffix)
end

done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH {"requests":%d,"duration_s":%.3f,"bytes_read":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,' ..
    '"max":%.3f,"mean":%.3f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
"""


def noise_png(target_bytes: int) -> bytes:
    """A valid PNG of random pixels (incompressible) of about ``target_bytes``."""
    side = int((target_bytes / 3) ** 0.5)
    pixels = np.random.default_rng(7).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def multipart(png: bytes, filename: str) -> tuple[bytes, bytes, str]:
    """The upload body split after the PNG's IHDR chunk, where the Lua script adds a unique chunk."""
    boundary = "ocrfleetbench0123456789"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    after_ihdr = 8 + 25
    return (head + png[:after_ihdr], png[after_ihdr:] + f"\r\n--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}")


def seed(database_url: str) -> tuple[str, str]:
    """A tenant, its key, and one processed document (a realistic one-page result) to hit."""
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    store = ResultStore(engine)
    directory = TenantDirectory(store, MASTER_KEY)
    directory.create_tenant("bench")
    key = directory.issue_key("bench")
    sha = "ab" * 32
    store.add_document(DocumentRow(id="seeded-document", tenant="bench", sha256=sha, status="queued"))
    lines = [TextLine(text=f"line {i}: 2024-03-{i % 28 + 1:02d} transfer 1,234.56", confidence=0.97,
                      box=[(10.0, 20.0 * i), (400.0, 20.0 * i), (400.0, 20.0 * i + 18), (10.0, 20.0 * i + 18)])
             for i in range(30)]
    store.save_result("seeded-document", [PageResult(page=0, width=1654, height=2339, lines=lines)],
                      document_type="generic", processing_ms=420.0)
    engine.dispose()
    return key.api_key, sha


class Cpu:
    """CPU seconds spent by groups of processes between two readings."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups

    def read(self) -> dict[str, float]:
        out = {}
        for name, procs in self.groups.items():
            total = 0.0
            for p in procs:
                for q in [p, *_children(p)]:
                    try:
                        t = q.cpu_times()
                        total += t.user + t.system
                    except psutil.Error:
                        pass
            out[name] = total
        return out


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def rss(p: psutil.Process) -> int:
    total = 0
    for q in [p, *_children(p)]:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


def run_wrk(url: str, *, body: bytes | tuple[bytes, bytes], content_type: str, method: str, api_key: str,
            duration: int, connections: int, threads: int, workdir: Path, cpu: Cpu, api_proc: psutil.Process) -> dict:
    """One wrk run; ``body`` as (prefix, suffix) makes every request's document unique."""
    body_file = workdir / "body.bin"
    unique = isinstance(body, tuple)
    if unique:
        Path(f"{body_file}.prefix").write_bytes(body[0])
        Path(f"{body_file}.suffix").write_bytes(body[1])
    else:
        body_file.write_bytes(body)
    script = workdir / "bench.lua"
    script.write_text(_LUA)
    env = {**os.environ, "BENCH_BODY": str(body_file), "BENCH_METHOD": method, "BENCH_CONTENT_TYPE": content_type,
           "BENCH_KEY": api_key, "BENCH_UNIQUE": "1" if unique else "0"}
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", str(script),
            url]
    before = cpu.read()
    peak = rss(api_proc)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wrk_ps = psutil.Process(proc.pid)
    wrk_cpu = 0.0
    while proc.poll() is None:
        peak = max(peak, rss(api_proc))
        try:
            t = wrk_ps.cpu_times()
            wrk_cpu = t.user + t.system
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = proc.stdout.read()
    after = cpu.read()
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    result = json.loads(line[len("BENCH "):])
    result["requests_per_s"] = round(result["requests"] / result["duration_s"], 1)
    result["api_peak_rss_mib"] = round(peak / 2**20, 1)
    spent = {k: round(after[k] - before[k], 2) for k in after}
    spent["wrk"] = round(wrk_cpu, 2)
    result["cpu_seconds"] = spent
    result["cpu_ms_per_request"] = {k: round(1000 * v / max(result["requests"], 1), 3) for k, v in spent.items()}
    result["wrk_argv"] = " ".join(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--scenarios", default="healthz,check_cache_hit,check_cache_miss,upload_100k,upload_2m")
    parser.add_argument("--profile", action="store_true",
                        help="sample one API worker with py-spy during each scenario (where the time goes)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="ocrfleet-api-bench-"))
    redis_server = RedisServer(appendonly=False).start()
    pg = PostgresServer().start()
    api = None
    try:
        api_key, sha = seed(pg.url)
        port = free_port()
        env = {**os.environ, "OCRFLEET_REDIS_URL": redis_server.url, "OCRFLEET_DATABASE_URL": pg.url,
               "OCRFLEET_BLOB_ROOT": str(workdir / "blobs"), "OCRFLEET_HOST": "127.0.0.1",
               "OCRFLEET_PORT": str(port), "OCRFLEET_WORKERS": str(args.workers),
               "OCRFLEET_RATE_LIMIT_REQUESTS": "100000000", "OCRFLEET_MAX_QUEUE_DEPTH": "100000000",
               "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(workdir / "api.log", "wb") as log:
            api = subprocess.Popen([sys.executable, "-m", "ocrfleet_api"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        _wait(base, api, workdir)
        api_ps = psutil.Process(api.pid)
        cpu = Cpu({"api": [api_ps], "postgres": [psutil.Process(pg.process.proc.pid)],
                   "redis": [psutil.Process(redis_server.process.proc.pid)]})
        idle_rss = rss(api_ps)

        small = multipart(noise_png(100 * 1024), "scan-100k.png")
        large = multipart(noise_png(2 * 1024 * 1024), "scan-2m.png")
        check = json.dumps({"sha256": sha}).encode()
        miss = json.dumps({"sha256": "cd" * 32}).encode()
        scenarios = {
            "healthz": (base + "/healthz", b"", "text/plain", "GET"),
            "check_cache_hit": (base + "/v1/documents/check-cache", check, "application/json", "POST"),
            "check_cache_miss": (base + "/v1/documents/check-cache", miss, "application/json", "POST"),
            "upload_100k": (base + "/v1/documents", small[:2], small[2], "POST"),
            "upload_2m": (base + "/v1/documents", large[:2], large[2], "POST"),
        }
        results = {}
        sync_redis = redis.Redis.from_url(redis_server.url)
        for name in args.scenarios.split(","):
            url, body, ctype, method = scenarios[name]
            connections = args.connections if not name.startswith("upload_2m") else max(args.connections // 2, 4)
            spy = _start_profile(api_ps, args.duration, workdir / f"{name}.txt") if args.profile else None
            r = run_wrk(url, body=body, content_type=ctype, method=method, api_key=api_key, duration=args.duration,
                        connections=connections, threads=args.threads, workdir=workdir, cpu=cpu, api_proc=api_ps)
            if spy is not None:
                spy.wait(30)
                r["profile"] = summarize_profile(workdir / f"{name}.txt")
            r["body_bytes"] = len(body) if isinstance(body, bytes) else len(body[0]) + len(body[1]) + 40
            r["expected_status"] = 404 if name == "check_cache_miss" else (202 if name.startswith("upload") else 200)
            results[name] = r
            r["enqueued"] = sum(int(sync_redis.xlen(keys.stream("default", p))) for p in keys.PRIORITIES)
            for p in keys.PRIORITIES:  # no workers here: keep the queue from growing without end
                sync_redis.delete(keys.stream("default", p))
            print(f"{name:18s} {r['requests_per_s']:9.1f} req/s  p50 {r['latency_ms']['p50']:7.2f} ms  "
                  f"p99 {r['latency_ms']['p99']:7.2f} ms  errors {r['errors']}  rss {r['api_peak_rss_mib']} MiB  "
                  f"cpu ms/req {r['cpu_ms_per_request']}", flush=True)
        scrape = httpx.get(base + "/metrics", timeout=10)
        served = sum(float(line.rsplit(" ", 1)[1]) for line in scrape.text.splitlines()
                     if line.startswith("ocrfleet_api_requests_total{"))
        report = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "load_avg_at_start": os.getloadavg()},
            "setup": {"uvicorn_workers": args.workers, "wrk_connections": args.connections,
                      "wrk_threads": args.threads, "duration_s": args.duration,
                      "redis": "redis-server, no persistence", "database": "PostgreSQL, fsync off",
                      "api_idle_rss_mib": round(idle_rss / 2**20, 1)},
            "metrics_check": {"status": scrape.status_code, "requests_counted_over_workers": served},
            "notes": ["errors.status counts responses >= 400: for check_cache_miss every 404 is expected",
                      "uploads carry a unique valid PNG per request (a tEXt chunk with a counter)",
                      "cpu_seconds: CPU time of each process group during the run; cpu_ms_per_request divides "
                      "it by the requests completed"],
            "scenarios": results,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"api_bench_{stamp}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {out}")
        return 0
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(20)
            except subprocess.TimeoutExpired:
                api.kill()
        pg.stop()
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_profile(api_ps: psutil.Process, duration: int, out: Path) -> subprocess.Popen | None:
    """py-spy on one worker process (the busiest share of the load is the same in each)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("py-spy is not installed (pip install py-spy); no profile", file=sys.stderr)
        return None
    workers = [c for c in _children(api_ps) if "spawn_main" in " ".join(c.cmdline())] or [api_ps]
    target = workers[-1].pid
    return subprocess.Popen([spy, "record", "-p", str(target), "-d", str(max(duration - 1, 1)), "-r", "200",
                             "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 15) -> dict:
    """Share of samples per frame: by self time, and by inclusive time for ocrfleet's own frames."""
    if not path.exists():
        return {}
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf = frames[-1]
        self_time[leaf] = self_time.get(leaf, 0) + n
        for frame in set(frames):
            if "ocrfleet" in frame or "sqlalchemy/orm/session.py" in frame or "redis" in frame:
                inclusive[frame] = inclusive.get(frame, 0) + n
    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    return {"samples": total, "self_pct": share(self_time), "inclusive_pct": share(inclusive)}


def _wait(base: str, proc: subprocess.Popen, workdir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "api.log").read_text()[-3000:])
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become ready")


if __name__ == "__main__":
    sys.exit(main())
