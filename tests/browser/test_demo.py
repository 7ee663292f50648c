"""The /demo/ page (DJANGO_DEBUG only) in headless Chromium: pick a user and an assistant type,
press "Start call", read the SDK's events; then staff find the call in the admin's call log.

The page loads the bundle whose Daily client is a stand-in, so the call starts without a network.
"""

import json

import pytest

from assistants.models import AssistantType
from calls import demo
from calls.models import CallLog
from tests.vapi_standin import CALL

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

JWT_SECRET = "demo-page-test-secret-long-enough-9b2d7e"


@pytest.fixture
def demo_on(settings, sdk_bundle, monkeypatch, standin_vapi, sales_coach):
    """DJANGO_DEBUG on, the stand-in Daily bundle, and two more types, one of them inactive."""
    settings.DEBUG = True
    monkeypatch.setattr(demo, "BUNDLE", sdk_bundle["vapi-fake-daily.js"])
    AssistantType.objects.create(slug="support", default_assistant=sales_coach.default_assistant)
    AssistantType.objects.create(slug="retired", default_assistant=sales_coach.default_assistant, is_active=False)


@pytest.fixture
def demo_page(page, live_server, demo_on):
    page.goto(f"{live_server.url}/demo/")
    return page


def log_lines(page) -> list[str]:
    return page.locator("#log li .name").all_inner_texts()


def test_the_demo_page_starts_a_call_and_shows_the_sdk_events(demo_page, standin_vapi, screenshot):
    assert demo_page.locator("#type option").all_inner_texts() == ["sales-coach", "support"]
    screenshot("ready")

    demo_page.fill("#user", "customer123")
    demo_page.select_option("#type", "support")
    demo_page.fill("#variables", '{"topic": "renewals"}')
    demo_page.click("#start")
    demo_page.locator("#log li", has_text="call-start-success").wait_for()
    demo_page.locator("#log li", has_text="call-start").first.wait_for()
    screenshot("started")

    assert "start() resolved" in log_lines(demo_page)
    assert CALL["id"] in demo_page.locator("#log li", has_text="start() resolved").inner_text()
    assert demo_page.is_enabled("#stop")
    [received] = standin_vapi.received
    sent = json.loads(received.body)["assistantOverrides"]
    assert sent["metadata"]["userId"] == "customer123"
    assert sent["metadata"]["assistantType"] == "support"
    assert sent["variableValues"]["topic"] == "renewals"

    demo_page.click("#stop")
    demo_page.locator("#log li", has_text="stopped").wait_for()
    screenshot("stopped")


def test_the_demo_page_shows_a_refusal_in_plain_words(demo_page, standin_vapi, screenshot):
    demo_page.fill("#variables", '{"notAllowed": "x"}')
    demo_page.click("#start")
    refusal = demo_page.locator("#log li.error", has_text="proxy refused")
    refusal.wait_for()
    screenshot("refused")

    text = refusal.inner_text()
    assert "error: proxy refused (400 variable_not_allowed)" in text
    assert CallLog.objects.get().error_code == "variable_not_allowed"
    assert standin_vapi.received == []


def test_the_demo_page_mints_a_token_in_jwt_mode(demo_page, standin_vapi, settings):
    settings.PROXY_IDENTITY = "jwt"
    settings.PROXY_JWT_SECRETS = [JWT_SECRET]
    demo_page.reload()

    demo_page.fill("#user", "jwt-user-7")
    demo_page.click("#start")
    demo_page.locator("#log li", has_text="call-start-success").wait_for()

    assert CallLog.objects.get().user_id == "jwt-user-7"
    [received] = standin_vapi.received
    assert json.loads(received.body)["assistantOverrides"]["metadata"]["userId"] == "jwt-user-7"


def test_without_the_bundle_the_page_says_which_command_builds_it(
    page, live_server, settings, monkeypatch, tmp_path, sales_coach, screenshot
):
    settings.DEBUG = True
    monkeypatch.setattr(demo, "BUNDLE", tmp_path / "vapi.js")

    page.goto(f"{live_server.url}/demo/")
    screenshot("no-bundle")

    assert page.inner_text("#bundle-missing") == (
        "The SDK bundle is not built yet, so this page cannot start calls. Run bin/frontend in the project "
        "folder (it needs Node.js and npm), then reload this page. bin/run builds it too when npm is installed."
    )
    assert page.is_disabled("#start")


def test_staff_find_the_demo_call_in_the_call_log(admin_page, live_server, demo_on, screenshot):
    admin_page.goto(f"{live_server.url}/demo/")
    admin_page.click("#start")
    admin_page.locator("#log li", has_text="call-start-success").wait_for()
    log = CallLog.objects.get()

    admin_page.goto(f"{live_server.url}/admin/calls/calllog/")
    screenshot("call-log")

    row = admin_page.locator("#result_list tbody tr")
    assert row.count() == 1
    assert "customer123" in row.inner_text() and "sales-coach" in row.inner_text()
    row.locator("a").first.click()
    admin_page.wait_for_url(f"{live_server.url}/admin/calls/calllog/{log.pk}/change/")
    screenshot("call-log-row")
    assert CALL["id"] in admin_page.content()
