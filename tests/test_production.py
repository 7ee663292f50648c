"""The documented production environment: `check --deploy` is clean, and `bin/serve` serves."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "VAPI_", "PROXY_"))}
    env.update(
        DJANGO_ENV_FILE="",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="proxy.example.com,127.0.0.1",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://proxy.example.com",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        DJANGO_SECURE_HSTS_PRELOAD="true",
        VAPI_API_KEY="production-test-key",
        PROXY_IDENTITY="jwt",
        PROXY_JWT_SECRETS=secrets.token_urlsafe(40),
        VAPI_WEBHOOK_AUTH="secret",
        VAPI_WEBHOOK_SECRETS=secrets.token_urlsafe(20),
        CORS_ALLOWED_ORIGINS="https://app.example.com",
    )
    env.update(extra)
    return env


def test_check_deploy_passes_with_the_documented_production_environment():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv/bin/gunicorn").exists(), reason="bin/serve needs the project's .venv")
def test_bin_serve_answers_and_shuts_down_gracefully(tmp_path):
    database = f"sqlite:///{tmp_path / 'serve.sqlite3'}"
    env = production_env(DATABASE_URL=database, PORT=str(_free_port()), HOST="127.0.0.1", WEB_CONCURRENCY="1")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    server = subprocess.Popen(
        ["bin/serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        for _ in range(100):
            try:
                health = httpx.get(f"{base}/healthz", headers={"Host": "proxy.example.com"})
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        else:
            pytest.fail("bin/serve did not start listening")
        refused = httpx.post(
            f"{base}/call/web",
            json={"assistantType": "sales-coach"},
            headers={"Host": "proxy.example.com", "X-Forwarded-Proto": "https"},
        )
        insecure = httpx.get(f"{base}/", headers={"Host": "proxy.example.com"})
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=40)

    assert (health.status_code, health.json()) == (200, {"status": "ok", "database": "ok"})
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_missing"
    assert (insecure.status_code, insecure.headers["location"]) == (301, "https://proxy.example.com/")
    assert server.returncode == 0, output
    assert "production-test-key" not in output


MANIFEST_STORAGE = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


def _server_start_errors(caplog) -> list[str]:
    from calls.apps import warn_if_unconfigured

    caplog.clear()
    warn_if_unconfigured()
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_a_server_started_before_collectstatic_says_so(settings, caplog, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    settings.STORAGES = MANIFEST_STORAGE

    assert _server_start_errors(caplog) == [
        f"Static files are not collected in {tmp_path / 'staticfiles'}: the admin and /api/docs/ fail until "
        "`manage.py collectstatic --noinput` runs (the API routes work)."
    ]

    (tmp_path / "staticfiles").mkdir()
    (tmp_path / "staticfiles" / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    assert _server_start_errors(caplog) == []
