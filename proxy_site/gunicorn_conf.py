"""Production serving: gunicorn with threaded workers (bin/serve uses this file).

A call start spends about a second waiting on Vapi and almost no CPU, so each worker process
runs many threads: concurrency is WEB_CONCURRENCY x GUNICORN_THREADS requests in flight, not
the number of processes. Database connections are not held while waiting on Vapi (see
calls/db.py), so the threads share a small connection pool per process.
"""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "160"))
# Longer than VAPI_TIMEOUT_SECONDS, so a slow Vapi answer is a 504 from the proxy, not a killed worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Finish requests in flight on SIGTERM before exiting (each may be a billed call start).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Longer than the balancer's idle timeout, so the balancer closes idle connections first.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
backlog = 2048
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Import the app before forking: workers share its memory and start faster.
preload_app = True
