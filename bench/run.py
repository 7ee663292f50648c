"""The proxy's benchmark: one command, one run, one table (README, "Performance").

    .venv/bin/python bench/run.py            # the full run, about 4 minutes
    .venv/bin/python bench/run.py --quick    # shorter runs, about 2 minutes, for trying it

In one run it creates a fresh PostgreSQL database (default name `vapi_proxy_bench`), migrates and
seeds it, starts the stand-in Vapi (bench/stand_in_vapi.py) and the proxy in its production
configuration (bin/serve: gunicorn gthread, PostgreSQL with a connection pool, Redis cache), all
on 127.0.0.1 only, and drives each scenario with wrk (bench/post_call.lua) against the stand-in
directly and through the proxy:

  1. slow upstream: 1000 ms delay, 256 connections, 20 s
  2. fast upstream: no delay, 64 connections, 10 s
  3. single client: no delay, 1 connection, 10 s
  4. memory: fast upstream, 64 connections, 60 s; RSS sampled every 0.5 s

Identity is PROXY_IDENTITY=open and every limit is off: the bench measures forwarding (body
checks, resolution, the call-log row before and after Vapi), not token checks or refusals.
`--limits high` switches every limit on at 1000000 instead: nothing is refused, but each admission
locks and counts as it does in production with limits set.

Each scenario gets a fresh stand-in and a fresh proxy. After each run the bench waits for the
requests still in flight, stops the proxy gracefully and checks that the call log holds exactly
one row per request the proxy received (counted from gunicorn's access log, not from wrk).

Flags: --quick, --scenarios 1,2,3,4, --workers N, --threads N, --pool-size N (defaults: the
proxy's own defaults from proxy_site/gunicorn_conf.py and settings.py; the pool size defaults to
the one named in DEFAULT_POOL_SIZE below), --db-name, --postgres-url, --redis-db, --client
{wrk,python}, --limits {off,high}, --profile FILE (py-spy on scenario 2; its numbers are then not comparable),
--keep-db, --keep-logs. Run it alone on the machine: anything else running skews the numbers.
"""

import argparse
import asyncio
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA_SCRIPT = BENCH / "post_call.lua"
PYTHON = ROOT / ".venv" / "bin" / "python"
LOOPBACK = "127.0.0.1"
ASSISTANT_TYPE = "bench-coach"
USERS = 100_000  # userIds the load spreads over (bench-0 .. bench-99999)
DEFAULT_POOL_SIZE = 20  # DATABASE_POOL_MAX_SIZE for the bench: the README's production example
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    delay_ms: int
    connections: int
    seconds: int
    memory: bool = False


FULL = [
    Scenario("1", "slow upstream", 1000, 256, 20),
    Scenario("2", "fast upstream", 0, 64, 10),
    Scenario("3", "single client", 0, 1, 10),
    Scenario("4", "memory (60 s)", 0, 64, 60, memory=True),
]
QUICK = [
    Scenario("1", "slow upstream", 1000, 256, 8),
    Scenario("2", "fast upstream", 0, 64, 5),
    Scenario("3", "single client", 0, 1, 5),
    Scenario("4", "memory (16 s)", 0, 64, 16, memory=True),
]


class BenchError(Exception):
    pass


# --- processes ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # Started processes get SIGTERM if this script dies without cleaning up (SIGKILL, crash).
    os.setsid()
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every process the bench starts, stopped at the end whatever happens."""

    def __init__(self):
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name, args, *, env=None, log=None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                [str(a) for a in args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out if log else subprocess.PIPE,
                stderr=subprocess.STDOUT if log else subprocess.PIPE,
                preexec_fn=_die_with_parent,
            )
        finally:
            if log:
                out.close()
        self.running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, *, grace: float = 45.0) -> None:
        """SIGTERM (gunicorn then finishes requests in flight), SIGKILL after `grace` seconds."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for name, proc in reversed(list(self.running)):
            if proc.poll() is None:
                print(f"  stopping {name} (pid {proc.pid})", flush=True)
            self.stop(proc, grace=40.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listened on 127.0.0.1:{port} after {seconds:.0f} s")


# No proxies from the environment: the bench talks to 127.0.0.1 only.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for_health(port: int, proc: subprocess.Popen, log: Path, *, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the proxy exited with {proc.returncode}; its log:\n{tail(log)}")
        try:
            with _http.open(f"http://{LOOPBACK}:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"the proxy did not answer /healthz after {seconds:.0f} s; its log:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- /proc accounting -------------------------------------------------------------------------


def process_tree(master: int) -> list[int]:
    """The gunicorn master and its workers."""
    pids = [master]
    try:
        for task in os.listdir(f"/proc/{master}/task"):
            with open(f"/proc/{master}/task/{task}/children") as f:
                pids.extend(int(pid) for pid in f.read().split())
    except OSError:
        pass
    return pids


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(master: int) -> float:
    """utime+stime of the master and its live workers, plus what reaped workers had used."""
    total = 0.0
    for pid in process_tree(master):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # After ")": fields[11..14] are utime, stime, cutime, cstime (stat fields 14-17).
        ticks = int(fields[11]) + int(fields[12])
        if pid == master:
            ticks += int(fields[13]) + int(fields[14])
        total += ticks / CLOCK_TICKS
    return total


def rss_bytes(master: int) -> int:
    total = 0
    for pid in process_tree(master):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
        except OSError:
            continue
    return total


class RssSampler(threading.Thread):
    """Sums the RSS of the proxy's processes every `interval` seconds while a run goes on."""

    def __init__(self, master: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.master, self.interval = master, interval
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self._done.is_set():
            self.samples.append((time.monotonic() - start, rss_bytes(self.master)))
            self._done.wait(self.interval)

    def finish(self) -> list[tuple[float, int]]:
        self._done.set()
        self.join(timeout=5)
        return self.samples


def quarters(samples: list[tuple[float, int]]) -> tuple[float, float]:
    """Mean RSS of the first and of the last quarter of the run (by time)."""
    end = samples[-1][0]
    first = [rss for t, rss in samples if t <= end / 4]
    last = [rss for t, rss in samples if t >= end * 3 / 4]
    return sum(first) / len(first), sum(last) / len(last)


# --- database ---------------------------------------------------------------------------------


def loopback_only(url: str, what: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise BenchError(f"{what} must be on this machine's loopback (127.0.0.1), not {host!r}")


class BenchDatabase:
    def __init__(self, admin_url: str, name: str):
        import psycopg

        self.psycopg = psycopg
        self.admin_url = admin_url.rstrip("/")
        self.name = name
        self.url = f"{self.admin_url}/{name}"
        self._conn = None

    def create(self) -> None:
        from psycopg import sql

        with self.psycopg.connect(f"{self.admin_url}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        from psycopg import sql

        self.close()
        with self.psycopg.connect(f"{self.admin_url}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))

    def rows(self) -> tuple[int, int]:
        """(call-log rows, of which still pending)."""
        if self._conn is None:
            self._conn = self.psycopg.connect(self.url, autocommit=True)
        row = self._conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE outcome = 'pending') FROM calls_calllog"
        ).fetchone()
        return row[0], row[1]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- load generators ---------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    detail: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> bool:
    """wrk from Debian's packages; False if it cannot be had (the Python client is used then)."""
    if shutil.which("wrk"):
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    print("wrk is missing: apt-get install -y wrk", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "timeout": 300}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, **quiet)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, **quiet)
    return bool(shutil.which("wrk"))


def run_wrk(processes: Processes, port: int, connections: int, seconds: float) -> Load:
    threads = min(2, connections)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BENCH_ASSISTANT_TYPE": ASSISTANT_TYPE,
        "BENCH_USERS": str(USERS),
    }
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", LUA_SCRIPT,
            f"http://{LOOPBACK}:{port}"]
    proc = processes.start("wrk", args, env=env)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        processes.stop(proc, grace=5)
    match = re.search(rb"^BENCH_RESULT (\{.*\})$", out, re.M)
    if not match:
        raise BenchError(f"wrk printed no result:\n{out.decode(errors='replace')}\n{err.decode(errors='replace')}")
    r = json.loads(match.group(1))
    return Load(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        non2xx=r["non2xx"],
        socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        detail=r,
    )


def run_python_client(port: int, connections: int, seconds: float) -> Load:
    """Fallback when wrk cannot be installed: keep-alive HTTP/1.1 clients on one asyncio loop."""
    latencies: list[float] = []
    counts = Counter()

    async def client(number: int, deadline: float):
        sent = 0
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            counts["socket"] += 1
            return
        try:
            while time.monotonic() < deadline:
                sent += 1
                user = (number * 7919 + sent) % USERS
                body = json.dumps({"userId": f"bench-{user}", "assistantType": ASSISTANT_TYPE}).encode()
                head = (f"POST /call/web HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                started = time.monotonic()
                writer.write(head + body)
                response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(response_head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", response_head).group(1))
                await reader.readexactly(length)
                latencies.append(time.monotonic() - started)
                if not 200 <= status < 300:
                    counts["non2xx"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            counts["socket"] += 1
        finally:
            writer.close()

    async def main():
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(*(client(n, deadline) for n in range(connections)))
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000 if latencies else 0.0

    return Load(len(latencies), elapsed, counts["non2xx"], counts["socket"], pct(50), pct(99))


# --- the proxy ------------------------------------------------------------------------------------


def limit_names() -> list[str]:
    """Every LIMIT_* setting the proxy reads, so the bench can switch each one off."""
    return sorted(set(re.findall(r'_limit\("(LIMIT_\w+)"', (ROOT / "proxy_site" / "settings.py").read_text())))


def base_env() -> dict:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {name: os.environ[name] for name in keep if name in os.environ}


def proxy_env(args, db: BenchDatabase, secret_key: str) -> dict:
    env = base_env()
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secret_key,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_SSL_REDIRECT="false",  # no TLS on loopback
        DJANGO_ENV_FILE="",
        DATABASE_URL=db.url,
        CACHE_URL=f"redis://{LOOPBACK}:6379/{args.redis_db}",
        VAPI_API_KEY="bench-placeholder-key",
        VAPI_BASE_URL=f"http://{LOOPBACK}:9",  # set per scenario
        PROXY_IDENTITY="open",
        PROXY_ALLOW_OPEN_IDENTITY="true",
        REFUSAL_THROTTLE_PER_MINUTE="0",
        LOG_LEVEL="WARNING",
        HOST=LOOPBACK,
        DATABASE_POOL_MAX_SIZE=str(args.pool_size),
    )
    for name in limit_names():
        # Off by default: the table measures forwarding. --limits high switches every limit on at
        # a value no run reaches, so each admission takes its locks and counts (the exact path).
        env[name] = "1000000" if args.limits == "high" else ""
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads:
        env["GUNICORN_THREADS"] = str(args.threads)
    return env


def received_calls(access_log: Path) -> int:
    """Requests to POST /call/web the proxy received: gunicorn writes one access-log line for
    each request it read, when the request is done (also when the client had gone)."""
    try:
        with open(access_log, "rb") as f:
            return sum(1 for line in f if b'"POST /call/web ' in line)
    except FileNotFoundError:
        return 0


def settle(db: BenchDatabase, access_log: Path, *, bound: float = 60.0) -> tuple[int, int, int, bool]:
    """Waits until no row is pending and neither count has moved for a second: the requests that
    were in flight when the load stopped are done. Returns (received, rows, pending, settled)."""
    deadline = time.monotonic() + bound
    last, since = None, time.monotonic()
    while True:
        rows, pending = db.rows()
        state = (received_calls(access_log), rows, pending)
        now = time.monotonic()
        if state != last:
            last, since = state, now
        elif pending == 0 and now - since >= 1.0:
            return (*state, True)
        if now > deadline:
            return (*state, False)
        time.sleep(0.2)


@dataclass
class Result:
    scenario: Scenario
    direct: Load
    proxy: Load
    cpu_ms_per_request: float
    peak_rss_mb: float
    rss_quarters_mb: tuple[float, float] | None
    received: int
    rows: int
    pending: int
    profiled: bool = False

    @property
    def rows_ok(self) -> bool:
        return self.received == self.rows and self.pending == 0

    @property
    def throughput_ratio(self) -> float:
        return self.proxy.rps / self.direct.rps if self.direct.rps else 0.0

    @property
    def p99_ratio(self) -> float:
        return self.proxy.p99_ms / self.direct.p99_ms if self.direct.p99_ms else 0.0

    @property
    def added_p50_ms(self) -> float:
        return self.proxy.p50_ms - self.direct.p50_ms


def run_scenario(args, scenario: Scenario, processes: Processes, db: BenchDatabase, env: dict, workdir: Path,
                 load) -> Result:
    print(f"\n== scenario {scenario.key}: {scenario.title}: {scenario.delay_ms} ms upstream delay, "
          f"{scenario.connections} connection(s), {scenario.seconds} s", flush=True)
    vapi_port, proxy_port = free_port(), free_port()
    stand_in = processes.start(
        "stand-in Vapi",
        [PYTHON, BENCH / "stand_in_vapi.py", "--port", vapi_port, "--delay-ms", scenario.delay_ms],
        env=base_env(),
        log=workdir / f"stand_in_{scenario.key}.log",
    )
    wait_for_port(vapi_port, stand_in)
    warmup = args.warmup

    print(f"  direct: {warmup} s warm-up, {scenario.seconds} s run against the stand-in", flush=True)
    load(vapi_port, scenario.connections, warmup)
    direct = load(vapi_port, scenario.connections, scenario.seconds)

    access_log = workdir / f"access_{scenario.key}.log"
    proxy_log = workdir / f"proxy_{scenario.key}.log"
    rows_at_start, _ = db.rows()
    proxy = processes.start(
        "proxy (bin/serve)",
        [ROOT / "bin" / "serve"],
        env={**env, "PORT": str(proxy_port), "VAPI_BASE_URL": f"http://{LOOPBACK}:{vapi_port}",
             "GUNICORN_ACCESS_LOG": str(access_log)},
        log=proxy_log,
    )
    try:
        wait_for_health(proxy_port, proxy, proxy_log)
        print(f"  proxy: {warmup} s warm-up, {scenario.seconds} s run ({len(process_tree(proxy.pid)) - 1} workers)",
              flush=True)
        load(proxy_port, scenario.connections, warmup)
        received_before, _, _, _ = settle(db, access_log)
        cpu_before = cpu_seconds(proxy.pid)
        sampler = RssSampler(proxy.pid)
        sampler.start()
        profiler = None
        if args.profile and scenario.key == args.profile_scenario:
            profiler = start_profiler(processes, proxy.pid, scenario.seconds, Path(args.profile))
        try:
            measured = load(proxy_port, scenario.connections, scenario.seconds)
        finally:
            samples = sampler.finish()
        if profiler is not None:
            profiler.wait(timeout=60)
        received_after, _, _, settled = settle(db, access_log)
        if not settled:
            print("  (requests still in flight after 60 s)", flush=True)
        cpu_after = cpu_seconds(proxy.pid)
        samples += [(samples[-1][0] + 0.5 if samples else 0.0, rss_bytes(proxy.pid))]
    finally:
        # Graceful stop: gunicorn finishes every request it read before exiting.
        processes.stop(proxy)
        processes.stop(stand_in, grace=10)
    received = received_calls(access_log)
    rows_total, pending = db.rows()
    window = received_after - received_before
    result = Result(
        scenario=scenario,
        direct=direct,
        proxy=measured,
        cpu_ms_per_request=(cpu_after - cpu_before) * 1000 / window if window else float("nan"),
        peak_rss_mb=max(rss for _, rss in samples) / 2**20,
        rss_quarters_mb=tuple(q / 2**20 for q in quarters(samples)) if scenario.memory else None,
        received=received,
        rows=rows_total - rows_at_start,
        pending=pending,
        profiled=profiler is not None,
    )
    print(f"  direct {direct.rps:.0f} req/s, p50 {direct.p50_ms:.2f} ms, p99 {direct.p99_ms:.2f} ms; "
          f"proxy {measured.rps:.0f} req/s, p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms, "
          f"{measured.non2xx} non-2xx, {measured.socket_errors} socket errors", flush=True)
    print(f"  call log: the proxy received {received} POST /call/web (access log), the call log gained "
          f"{result.rows} rows, {pending} pending: {'OK, one row per request' if result.rows_ok else 'MISMATCH'}",
          flush=True)
    return result


# --- profiling --------------------------------------------------------------------------------------


def start_profiler(processes: Processes, master: int, seconds: int, out: Path) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(py_spy).exists():
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    print(f"  profiling the proxy with py-spy for {seconds} s -> {out}", flush=True)
    return processes.start(
        "py-spy",
        [py_spy, "record", "--pid", master, "--subprocesses", "--gil", "--nonblocking", "--rate", "200",
         "--duration", seconds, "--format", "raw", "--output", out],
        env=base_env(),
        log=out.with_suffix(".log"),
    )


def summarize_profile(path: Path, top: int = 25) -> str:
    """Top functions by inclusive and by own share of the samples (py-spy's collapsed stacks)."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    lines = [f"{total} samples (threads holding the GIL)", "", "inclusive:"]
    lines += [f"  {n * 100 / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "own time:"]
    lines += [f"  {n * 100 / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


# --- the report ---------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    head = ("| scenario | req/s | p50 ms | p99 ms | non-2xx | socket errors | CPU ms/req | peak RSS MB "
            "| direct req/s | direct p50 ms | direct p99 ms | throughput ratio | p99 ratio | added p50 ms "
            "| call-log rows |")
    rule = "|" + "---|" * (head.count("|") - 1)
    lines = [head, rule]
    for r in results:
        s = r.scenario
        name = f"{s.key} {s.title}: {s.delay_ms} ms, {s.connections} conn, {s.seconds} s" + (
            " (profiled)" if r.profiled else "")
        rows = f"{r.rows}/{r.received} {'OK' if r.rows_ok else 'MISMATCH'}"
        lines.append(
            f"| {name} | {r.proxy.rps:.1f} | {r.proxy.p50_ms:.2f} | {r.proxy.p99_ms:.2f} | {r.proxy.non2xx} "
            f"| {r.proxy.socket_errors} | {r.cpu_ms_per_request:.2f} | {r.peak_rss_mb:.0f} | {r.direct.rps:.1f} "
            f"| {r.direct.p50_ms:.2f} | {r.direct.p99_ms:.2f} | {r.throughput_ratio:.3f} | {r.p99_ratio:.3f} "
            f"| {r.added_p50_ms:+.2f} | {rows} |"
        )
    return "\n".join(lines)


def targets(results: list[Result]) -> str:
    by_key = {r.scenario.key: r for r in results}
    checks = []

    def check(key, target, measure):
        r = by_key.get(key)
        if r is None:
            return
        value, ok = measure(r)
        checks.append((target, value, "PASS" if ok else "MISS"))

    check("1", "1: throughput >= 0.95 x direct", lambda r: (f"{r.throughput_ratio:.3f}", r.throughput_ratio >= 0.95))
    check("1", "1: p99 <= 1.2 x direct", lambda r: (f"{r.p99_ratio:.3f}", r.p99_ratio <= 1.2))
    check("1", "1: zero errors (non-2xx + socket errors)",
          lambda r: (str(r.proxy.non2xx + r.proxy.socket_errors), r.proxy.non2xx + r.proxy.socket_errors == 0))
    check("2", "2: proxy CPU <= 1.0 ms per request",
          lambda r: (f"{r.cpu_ms_per_request:.2f} ms", r.cpu_ms_per_request <= 1.0))
    check("3", "3: p50 added over direct <= 3 ms", lambda r: (f"{r.added_p50_ms:+.2f} ms", r.added_p50_ms <= 3.0))

    def memory(r):
        first, last = r.rss_quarters_mb
        change = (last - first) / first * 100
        return f"{first:.1f} -> {last:.1f} MB ({change:+.1f}%)", abs(change) <= 10.0

    check("4", "4: RSS flat: last quarter within 10% of first", memory)
    if results:
        good = sum(r.rows_ok for r in results)
        checks.append(("all: exactly one call-log row per request received", f"{good}/{len(results)} scenarios",
                       "PASS" if good == len(results) else "MISS"))
    width = max(len(t) for t, _, _ in checks)
    vwidth = max(len(v) for _, v, _ in checks)
    return "\n".join(f"{t.ljust(width)}  {v.ljust(vwidth)}  {ok}" for t, v, ok in checks)


def describe_setup(args, env: dict, client: str) -> str:
    def setting(name, default):
        return env.get(name) or f"{default} (default)"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True)
    load = os.getloadavg()
    return (
        f"load average before the run {args.load_before:.2f}, after {load[0]:.2f}; "
        f"this CPU's speed: a 10-million-step Python loop took {python_loop_seconds():.2f} s\n"
        f"commit {commit.stdout.strip() or '?'}{' + uncommitted changes' if dirty.stdout.strip() else ''}, "
        f"{os.cpu_count()} CPUs, load generator: {client}\n"
        f"proxy: bin/serve (gunicorn gthread), WEB_CONCURRENCY={setting('WEB_CONCURRENCY', gunicorn_default('workers'))}, "
        f"GUNICORN_THREADS={setting('GUNICORN_THREADS', gunicorn_default('threads'))}, "
        f"DATABASE_POOL_MAX_SIZE={env['DATABASE_POOL_MAX_SIZE']}, PostgreSQL database {args.db_name}, "
        f"Redis db {args.redis_db}, PROXY_IDENTITY=open, "
        f"{'every limit on at 1000000' if args.limits == 'high' else 'no limits'}, LOG_LEVEL=WARNING, access log on"
    )


def python_loop_seconds() -> float:
    """A yardstick printed with the table: a virtual machine's CPU speed changes from run to run."""
    started = time.process_time()
    total = 0
    for number in range(10_000_000):
        total += number
    return time.process_time() - started


def gunicorn_default(name: str) -> str:
    env_name = {"workers": "WEB_CONCURRENCY", "threads": "GUNICORN_THREADS"}[name]
    text = (ROOT / "proxy_site" / "gunicorn_conf.py").read_text()
    match = re.search(rf'"{env_name}",\s*"(\d+)"', text)
    return match.group(1) if match else "?"


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark the proxy against a stand-in Vapi on loopback (README, \"Performance\").")
    parser.add_argument("--quick", action="store_true", help="shorter runs (8/5/5/16 s) for trying the bench")
    parser.add_argument("--scenarios", default="1,2,3,4", help="which scenarios to run, e.g. 2,3")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: gunicorn_conf.py's)")
    parser.add_argument("--threads", type=int, help="GUNICORN_THREADS (default: gunicorn_conf.py's)")
    parser.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE,
                        help=f"DATABASE_POOL_MAX_SIZE per process (default {DEFAULT_POOL_SIZE})")
    parser.add_argument("--warmup", type=int, help="warm-up seconds before each measured run (default 3, quick 2)")
    parser.add_argument("--db-name", default="vapi_proxy_bench", help="the bench database (dropped and created)")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server on loopback, without a database name")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database number on 127.0.0.1:6379")
    parser.add_argument("--client", choices=("wrk", "python"), default="wrk",
                        help="load generator (python: the asyncio fallback)")
    parser.add_argument("--profile", metavar="FILE", help="py-spy (collapsed stacks) of one scenario into FILE")
    parser.add_argument("--profile-scenario", default="2", help="the scenario --profile samples (default 2)")
    parser.add_argument("--limits", choices=("off", "high"), default="off",
                        help="every LIMIT_* off (default), or on at 1000000 so admissions lock and count")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--keep-logs", action="store_true", help="keep the proxy's and stand-in's logs")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    if args.warmup is None:
        args.warmup = 2 if args.quick else 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = {key.strip() for key in args.scenarios.split(",") if key.strip()}
    scenarios = [s for s in (QUICK if args.quick else FULL) if s.key in chosen]
    if not scenarios:
        print("No scenario chosen (--scenarios takes 1,2,3,4).", file=sys.stderr)
        return 2
    loopback_only(args.postgres_url, "--postgres-url")

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)

    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="vapi-proxy-bench-"))
    db = BenchDatabase(args.postgres_url, args.db_name)
    failed = True
    try:
        client = "wrk"
        if args.client == "wrk" and not ensure_wrk():
            print("wrk could not be installed: using the Python asyncio client instead "
                  "(it shares the 2 CPUs and may not keep up with the fast scenarios).", flush=True)
            client = "python"
        elif args.client == "python":
            client = "python"
        if client == "wrk":
            def load(port, connections, seconds):
                return run_wrk(processes, port, connections, seconds)
        else:
            def load(port, connections, seconds):
                return run_python_client(port, connections, seconds)

        busy = os.getloadavg()[0]
        if busy > 0.5:
            print(f"The machine is busy (load average {busy:.1f} on {os.cpu_count()} CPUs): the figures will be "
                  "skewed; run the bench alone for numbers worth comparing.", flush=True)
        # bin/_env installs the project's dependencies into .venv when pyproject.toml changed.
        subprocess.run(["bash", "-c", "source bin/_env"], cwd=ROOT, check=True)
        secret_key = secrets.token_urlsafe(40)
        env = proxy_env(args, db, secret_key)
        print(f"Creating the bench database {args.db_name}, migrating and seeding it", flush=True)
        db.create()
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0", "--skip-checks"], cwd=ROOT, env=env,
                       check=True)
        subprocess.run([PYTHON, BENCH / "seed.py", ASSISTANT_TYPE], cwd=ROOT, env=env, check=True)

        results = [run_scenario(args, s, processes, db, env, workdir, load) for s in scenarios]

        print("\n" + describe_setup(args, env, client) + "\n")
        print(table(results))
        print("\nTargets, measured in this run:")
        print(targets(results))
        if args.profile and any(r.profiled for r in results):
            print(f"\nProfile of scenario {args.profile_scenario} ({args.profile}):")
            print(summarize_profile(Path(args.profile)))
        failed = False
        return 0 if all(r.rows_ok for r in results) else 1
    except KeyboardInterrupt:
        print("\nInterrupted: stopping everything the bench started.", file=sys.stderr)
        return 130
    except (BenchError, subprocess.CalledProcessError) as err:
        print(f"\nThe bench failed: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        processes.stop_all()
        db.close()
        if not args.keep_db:
            try:
                db.drop()
            except Exception as err:  # noqa: BLE001 - clean-up must go on
                print(f"Could not drop {args.db_name}: {err}", file=sys.stderr)
        if failed or args.keep_logs:
            print(f"Logs: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
