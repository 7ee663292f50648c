"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium, driven by Playwright.

Without chromium, or without the SDK bundle (bin/frontend builds it; it needs Node.js), these
tests skip and say why. Under CI=true they fail instead: there both must be present.

Fixtures for later browser tests:
- `page`: a fresh browser tab; `screenshot("step")` saves a PNG of it under
  test-artifacts/screenshots/<test>/ (a failing test gets a last one, `failed.png`);
- `admin_page`: a tab logged in to the admin as a superuser, through the real login form;
- `app_server`: serves pages (and the SDK bundle) from a loopback origin of their own.
"""

import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
BUNDLE_DIR = ROOT / "frontend" / "dist"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every URL whose host is not loopback, e.g. Daily's call machine and its error reporting.
_OUTSIDE = re.compile(r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?/)[a-z]+://")
ADMIN_USERNAME = "staff"
ADMIN_PASSWORD = "browser-test-password-4e1f"


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} Under CI=true browser tests must run, not skip.", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module.

    Playwright's sync API keeps an asyncio loop running on this thread while it is started, and
    Django refuses ORM calls while a loop runs. The tests' own ORM calls between browser steps are
    plain synchronous code, so the check is lifted for as long as Playwright runs, and Playwright
    stops after each module so no other test runs beside its loop.
    """
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run browser tests.")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


@pytest.fixture(scope="session")
def sdk_bundle():
    """frontend/dist/: `vapi.js` (the SDK with the real Daily client) and `vapi-fake-daily.js`."""
    bundles = {name: BUNDLE_DIR / name for name in ("vapi.js", "vapi-fake-daily.js")}
    if not all(path.is_file() for path in bundles.values()):
        if not (shutil.which("node") and shutil.which("npm")):
            unavailable("Node.js and npm are not installed, so bin/frontend cannot build the SDK bundle.")
        unavailable("The SDK bundle is not built: run bin/frontend (bin/test runs it when npm is installed).")
    return bundles


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def outside_requests():
    """URLs the page tried to reach beyond loopback (each was refused: tests never leave the machine)."""
    return []


@pytest.fixture
def page(chromium, request, outside_requests):
    context = chromium.new_context(viewport={"width": 1100, "height": 760})

    def refuse(route):
        outside_requests.append(route.request.url)
        route.abort("internetdisconnected")

    context.route(_OUTSIDE, refuse)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not page.is_closed():
        page.screenshot(path=_screenshot_dir(request.node) / "failed.png", full_page=True)
    context.close()


def _screenshot_dir(node) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid.split("::", 1)[-1]).strip("_")
    directory = SCREENSHOTS / Path(node.path).stem / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def screenshot(page, request):
    """`screenshot("started")` saves test-artifacts/screenshots/<module>/<test>/01-started.png."""
    directory = _screenshot_dir(request.node)
    for old in directory.glob("*.png"):
        old.unlink()
    taken = []

    def take(step: str) -> Path:
        taken.append(step)
        path = directory / f"{len(taken):02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', step)}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def admin_page(page, live_server, django_user_model, settings):
    """A tab logged in to the admin as a superuser, through the login form."""
    # The live server speaks plain HTTP; Secure cookies would not come back over it.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser(ADMIN_USERNAME, "staff@example.com", ADMIN_PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


class _Pages(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _PagesHandler)
        self.files: dict[str, tuple[str, bytes]] = {}

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def serve(self, path: str, content: bytes | str | Path, content_type: str = "text/html; charset=utf-8"):
        if isinstance(content, Path):
            content = content.read_bytes()
        if isinstance(content, str):
            content = content.encode()
        self.files[path] = (content_type, content)
        return f"{self.origin}{path}"


class _PagesHandler(BaseHTTPRequestHandler):
    server: _Pages

    def do_GET(self):
        content_type, content = self.server.files.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.server.files else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def app_server():
    """A frontend's own origin on loopback: `app_server.serve("/", html)` returns the page's URL."""
    server = _Pages()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="app-pages")
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
