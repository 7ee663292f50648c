"""The benchmark's own arithmetic and its stand-in Vapi (bench/), so the shipped script keeps working.

The benchmark itself is run by hand (README, "Performance"): it needs minutes of a quiet machine.
"""

import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("run")


def _load_result(rps, p50, p99):
    return bench.Load(requests=int(rps * 10), seconds=10.0, non2xx=0, socket_errors=0, p50_ms=p50, p99_ms=p99)


def _result(key, *, direct, proxy, cpu=0.5, quarters=None, received=100, rows=100, pending=0):
    scenario = next(s for s in bench.FULL if s.key == key)
    return bench.Result(
        scenario=scenario,
        direct=direct,
        proxy=proxy,
        cpu_ms_per_request=cpu,
        peak_rss_mb=150.0,
        rss_quarters_mb=quarters,
        received=received,
        rows=rows,
        pending=pending,
    )


def test_the_scenarios_are_the_ones_issue_5_names():
    assert [(s.delay_ms, s.connections, s.seconds) for s in bench.FULL] == [
        (1000, 256, 20),
        (0, 64, 10),
        (0, 1, 10),
        (0, 64, 60),
    ]


def test_targets_pass_and_miss_on_the_issue_thresholds():
    results = [
        _result("1", direct=_load_result(250, 1001, 1010), proxy=_load_result(240, 1003, 1200)),
        _result("2", direct=_load_result(20000, 2, 8), proxy=_load_result(900, 60, 90), cpu=1.4),
        _result("3", direct=_load_result(9000, 0.1, 0.3), proxy=_load_result(300, 3.0, 5.0)),
        _result("4", direct=_load_result(20000, 2, 8), proxy=_load_result(900, 60, 90), quarters=(180.0, 199.0)),
    ]

    lines = bench.targets(results).splitlines()

    verdicts = [line.rsplit(maxsplit=1)[-1] for line in lines]
    # 0.96 of direct: pass; p99 1200/1010 = 1.188: pass; no errors; 1.4 ms CPU: miss;
    # +2.9 ms p50: pass; +10.6% RSS: miss; every row accounted for: pass.
    assert verdicts == ["PASS", "PASS", "PASS", "MISS", "PASS", "MISS", "PASS"]
    assert "1.40 ms" in lines[3]
    assert "180.0 -> 199.0 MB (+10.6%)" in lines[5]


def test_a_missing_call_log_row_is_a_mismatch():
    result = _result("2", direct=_load_result(100, 1, 1), proxy=_load_result(100, 1, 1), received=100, rows=99)

    assert not result.rows_ok
    assert "99/100 MISMATCH" in bench.table([result])


def test_memory_quarters_average_the_first_and_last_quarter_of_the_run():
    samples = [(t / 2, 100 + t) for t in range(0, 121)]  # 60 s, RSS growing by 1 byte per sample

    first, last = bench.quarters(samples)

    assert first == pytest.approx(115.0)  # samples at 0..15 s
    assert last == pytest.approx(205.0)  # samples at 45..60 s


def test_requests_received_are_counted_from_the_access_log(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '127.0.0.1 - - [03/Dec/2026:10:00:00 +0000] "POST /call/web HTTP/1.1" 201 150 "-" "-"\n'
        '127.0.0.1 - - [03/Dec/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 30 "-" "-"\n'
        '127.0.0.1 - - [03/Dec/2026:10:00:01 +0000] "POST /call/web HTTP/1.1" 502 150 "-" "-"\n'
    )

    assert bench.received_calls(log) == 2
    assert bench.received_calls(tmp_path / "missing.log") == 0


def test_the_bench_switches_off_every_limit_the_settings_read():
    from django.conf import settings

    limits = {name for name in dir(settings) if name.startswith("LIMIT_") and "RETRY_AFTER" not in name}
    assert bench.limit_names() == sorted(limits)
    assert len(limits) == 7


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stand_in():
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "stand_in_vapi.py"), "--port", str(port), "--delay-ms", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_the_stand_in_answers_each_call_start_with_a_new_call_after_its_delay(stand_in):
    with httpx.Client(base_url=stand_in) as client:
        started = time.monotonic()
        first = client.post("/call/web", json={"assistant": {"model": {}}})
        took = time.monotonic() - started
        second = client.post("/call/web", json={"assistant": {"model": {}}})
        missing = client.get("/call/web")

    assert first.status_code == 201
    assert took >= 0.05
    assert set(first.json()) >= {"id", "webCallUrl", "status", "monitor"}
    assert first.json()["id"] != second.json()["id"]
    assert json.loads(second.content)["status"] == "queued"
    assert missing.status_code == 404
