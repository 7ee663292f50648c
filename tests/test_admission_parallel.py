"""Many simultaneous starts at a cap of K: exactly K reach Vapi, in threads of one process and in
separate OS processes sharing one database; and processes share the refusal throttle via Redis.

Run as `python -m tests.test_admission_parallel <command> <json>` this module is also the worker
each subprocess runs: a whole Django process (settings from the environment, like production)
that posts starts through the full stack with the test client, Vapi faked at the httpx transport.

Why subprocesses for SQLite: the test database pytest-django makes for SQLite lives in memory, in
shared-cache mode, where concurrent connections get "database table is locked" at once instead of
waiting, and a separate process cannot see it at all. Threads against a SQLite *file* therefore run
in a subprocess whose DATABASE_URL names a file under tmp_path (migrated once per module and copied
per test), which also leaves the suite's own database and settings untouched.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
K = 3
LIMIT_SETTINGS = (
    "LIMIT_USER_CALLS_PER_MINUTE",
    "LIMIT_USER_CALLS_PER_DAY",
    "LIMIT_USER_CONCURRENT_CALLS",
    "LIMIT_TYPE_CONCURRENT_CALLS",
    "LIMIT_DEPLOYMENT_CONCURRENT_CALLS",
    "LIMIT_USER_DAILY_SPEND",
    "LIMIT_DEPLOYMENT_DAILY_SPEND",
)
# The setting capped at K and the code of its refusal. "user": every start is bob's; "deployment":
# every start is a different user's.
CAPS = {
    "user": ("LIMIT_USER_CONCURRENT_CALLS", "limit_user_concurrent_calls"),
    "deployment": ("LIMIT_DEPLOYMENT_CONCURRENT_CALLS", "limit_deployment_concurrent_calls"),
}


def start_bodies(cap: str, count: int, tag: str) -> list[dict]:
    def user(number):
        return "bob" if cap == "user" else f"user-{tag}-{number}"

    return [{"assistant": {"userId": user(number), "assistantType": "sales-coach"}} for number in range(count)]


# --- the worker (runs inside each subprocess, and in-process for PostgreSQL threads) ------------------


def seed() -> None:
    from assistants.models import Assistant, AssistantType

    assistant = Assistant.objects.create(name="Sales coach", config={"firstMessage": "Hi!"})
    AssistantType.objects.create(slug="sales-coach", default_assistant=assistant)


def fire(starts: list[dict], *, ready: Path | None = None, go: Path | None = None) -> dict:
    """Posts every start at the same moment, one thread each; returns what Vapi and the clients saw."""
    from django.db import connection
    from django.test import Client

    from calls.vapi import use_vapi_transport

    received = []

    def vapi(request):
        received.append(request.url.path)
        time.sleep(0.05)  # the admitted call stays pending while the others are being admitted
        call_id = str(uuid.uuid4())
        return httpx.Response(201, json={"id": call_id, "webCallUrl": f"https://vapi.daily.co/{call_id}"})

    use_vapi_transport(httpx.MockTransport(vapi))
    answers = [None] * len(starts)
    barrier = threading.Barrier(len(starts) + 1)

    def post(index, body):
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            response = Client().generic("POST", "/call/web", data=json.dumps(body), content_type="application/json")
            answers[index] = [response.status_code, response.json().get("code"), response.get("Retry-After")]
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(index, body)) for index, body in enumerate(starts)]
    for thread in threads:
        thread.start()
    if ready is not None:
        ready.touch()
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
    barrier.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    use_vapi_transport(None)
    return {"vapi": received, "answers": answers}


def send(requests: list[dict]) -> list[list]:
    """Posts one request after the other; each is {"body": ..., "ip": ...}."""
    from django.test import Client

    from calls.vapi import use_vapi_transport

    def vapi(request):
        call_id = str(uuid.uuid4())
        return httpx.Response(201, json={"id": call_id, "webCallUrl": f"https://vapi.daily.co/{call_id}"})

    use_vapi_transport(httpx.MockTransport(vapi))
    answers = []
    for request in requests:
        response = Client(REMOTE_ADDR=request["ip"]).generic(
            "POST", "/call/web", data=json.dumps(request["body"]), content_type="application/json"
        )
        answers.append([response.status_code, response.json().get("code"), response.get("Retry-After")])
    return answers


def main(command: str, config: dict) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
    django.setup()
    if command == "prepare":
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        seed()
        result = None
    elif command == "fire":
        ready, go = (Path(config[name]) if config.get(name) else None for name in ("ready", "go"))
        result = fire(config["starts"], ready=ready, go=go)
    elif command == "send":
        result = send(config["requests"])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))



# --- running workers ------------------------------------------------------------------------------------


def worker_env(database_url: str, **overrides) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "proxy_site.settings",
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-only-secret-key-not-for-production",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DATABASE_URL": database_url,
        "PROXY_IDENTITY": "open",
        "PROXY_ALLOW_OPEN_IDENTITY": "true",
        "VAPI_API_KEY": "test-private-key-5d2c9e",
        "VAPI_BASE_URL": "https://vapi.test",
        "REFUSAL_THROTTLE_PER_MINUTE": "0",
        "CACHE_URL": "",
        "LOG_LEVEL": "CRITICAL",
    }
    env.update({name: "none" for name in LIMIT_SETTINGS})
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def spawn(command: str, config: dict, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_admission_parallel", command, json.dumps(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(process: subprocess.Popen, timeout: float = 60):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def run(command: str, config: dict, env: dict):
    return result_of(spawn(command, config, env))


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file database, migrated and seeded once for this module."""
    path = tmp_path_factory.mktemp("admission") / "template.sqlite3"
    run("prepare", {}, worker_env(f"sqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_file(sqlite_template, tmp_path) -> str:
    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def sqlite_rows(database_url: str) -> list[tuple]:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as db:
        return sorted(db.execute("SELECT outcome, status_code, error_code FROM calls_calllog").fetchall())


def orm_rows() -> list[tuple]:
    from calls.models import CallLog

    return sorted(CallLog.objects.values_list("outcome", "status_code", "error_code"))


def assert_exactly_k_admitted(results: list[dict], rows: list[tuple], *, total: int, code: str):
    answers = [answer for result in results for answer in result["answers"]]
    vapi = [path for result in results for path in result["vapi"]]
    assert len(answers) == total
    assert sorted(answers, key=json.dumps) == sorted(
        [[201, None, None]] * K + [[429, code, "30"]] * (total - K), key=json.dumps
    )
    assert vapi == ["/call/web"] * K
    assert rows == sorted([("created", 201, "")] * K + [("rejected", 429, code)] * (total - K))


def postgres_url(connection) -> str:
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def on_postgresql() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# --- threads in one process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", CAPS)
def test_simultaneous_starts_in_threads_admit_exactly_k_on_postgresql(transactional_db, settings, cap):
    if not on_postgresql():
        pytest.skip("the suite runs on SQLite; DATABASE_URL=postgres://... bin/test runs this")
    setting, code = CAPS[cap]
    setattr(settings, setting, K)
    seed()

    result = fire(start_bodies(cap, 16, "threads"))

    assert_exactly_k_admitted([result], orm_rows(), total=16, code=code)


@pytest.mark.parametrize("cap", CAPS)
def test_simultaneous_starts_in_threads_admit_exactly_k_on_a_sqlite_file(sqlite_file, cap):
    setting, code = CAPS[cap]

    result = run("fire", {"starts": start_bodies(cap, 16, "threads")}, worker_env(sqlite_file, **{setting: K}))

    assert_exactly_k_admitted([result], sqlite_rows(sqlite_file), total=16, code=code)


# --- separate processes ---------------------------------------------------------------------------------------


def fire_from_processes(database_url: str, tmp_path: Path, cap: str, *, processes=2, each=9) -> list[dict]:
    """Starts the workers, waits until every one has Django up and its threads waiting, then says go."""
    setting, _ = CAPS[cap]
    env = worker_env(database_url, **{setting: K})
    go = tmp_path / "go"
    workers = []
    try:
        for number in range(processes):
            ready = tmp_path / f"ready-{number}"
            config = {"starts": start_bodies(cap, each, f"p{number}"), "ready": str(ready), "go": str(go)}
            workers.append((spawn("fire", config, env), ready))
        deadline = time.monotonic() + 30
        while not all(ready.exists() for _, ready in workers):
            assert time.monotonic() < deadline, "the workers did not get ready in 30 s"
            for worker, _ in workers:
                if worker.poll() is not None:
                    result_of(worker)  # fails with the worker's error output
            time.sleep(0.01)
        go.touch()
        return [result_of(worker) for worker, _ in workers]
    finally:
        for worker, _ in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()


@pytest.mark.parametrize("cap", CAPS)
def test_processes_share_the_limits_through_the_database(transactional_db, sqlite_file, tmp_path, cap):
    from django.db import connection

    _, code = CAPS[cap]
    if on_postgresql():  # the suite's own test database, which transactional_db lets them see
        seed()
        database_url = postgres_url(connection)
    else:
        database_url = sqlite_file

    results = fire_from_processes(database_url, tmp_path, cap)

    rows = orm_rows() if on_postgresql() else sqlite_rows(database_url)
    assert_exactly_k_admitted(results, rows, total=18, code=code)


# --- the refusal throttle through Redis -----------------------------------------------------------------------


@pytest.fixture
def redis_url():
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except redis.RedisError as err:
        pytest.skip(f"Redis is not reachable at {url} ({err}); start it (CI does) or set TEST_REDIS_URL")
    return url


def test_two_processes_share_the_refusal_count_through_redis(redis_url, sqlite_file):
    env = worker_env(sqlite_file, CACHE_URL=redis_url, REFUSAL_THROTTLE_PER_MINUTE=3)
    ip, other_ip = (f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}" for _ in range(2))  # this run's own
    unknown_type = {"assistant": {"userId": "bob", "assistantType": "no-such-type"}}
    valid = {"assistant": {"userId": "bob", "assistantType": "sales-coach"}}

    first = run("send", {"requests": [{"body": unknown_type, "ip": ip}] * 2}, env)
    second = run(
        "send",
        {
            "requests": [
                {"body": unknown_type, "ip": ip},
                {"body": valid, "ip": ip},
                {"body": valid, "ip": other_ip},
            ]
        },
        env,
    )

    assert first == [[404, "unknown_assistant_type", None]] * 2
    assert second == [
        [404, "unknown_assistant_type", None],
        [429, "too_many_refusals", "60"],  # the third refusal was this process's first
        [201, None, None],
    ]
    assert sqlite_rows(sqlite_file) == [("created", 201, "")] + [("rejected", 404, "unknown_assistant_type")] * 3


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
