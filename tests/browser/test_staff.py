"""What a staff member does in the admin, in headless Chromium: write an assistant's config (and
fix a JSON mistake), add an assistant type and a user's mapping, preview what Vapi would get, find
a call the real SDK started in the call log, download it as CSV, read the charts, restore an older
config from the history, and import assistants from Vapi (the stand-in on loopback).

Each step saves a screenshot under test-artifacts/screenshots/test_staff/<test>/.
"""

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django.utils.formats import date_format

from assistants.models import Assistant, UserMapping
from calls.models import CallLog, local_time
from tests.browser.test_sdk import APP_TOKEN, open_app, proxy_error, start
from tests.vapi_standin import CALL, CLIENT_VIEW

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("transactional_db")]

CONFIG_WITH_A_MISTAKE = """{
  "firstMessage": "Hi {{customerName}}, ready to practise?"
  "model": {"provider": "openai", "model": "gpt-4o-mini"}
}"""
CONFIG = {
    "firstMessage": "Hi {{customerName}}, ready to practise?",
    "model": {"provider": "openai", "model": "gpt-4o-mini"},
}
PERMANENT_ID = "6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_page(admin_page):
    """The admin on a small laptop's screen, the narrowest staff are expected to use."""
    admin_page.set_viewport_size({"width": 1280, "height": 800})
    return admin_page


def success_messages(page) -> list[str]:
    return page.locator("ul.messagelist li.success").all_inner_texts()


def follow(page, target):
    """Clicks a link or a form's button (a selector or a locator) and waits until the next page has loaded."""
    with page.expect_navigation():
        (page.locator(target) if isinstance(target, str) else target).click()


def field_errors(page, field: str) -> list[str]:
    return page.locator(f".field-{field} ul.errorlist li").all_inner_texts()


def pick(page, field: str, text: str):
    """Chooses `text` in an autocomplete (select2) box, as a person does: open it, type, click."""
    page.click(f".field-{field} .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.locator(".select2-results__option", has_text=text).first.click()


def test_staff_fix_a_json_mistake_in_a_transient_assistant(admin_page, live_server, screenshot):
    page = admin_page
    page.goto(f"{live_server.url}/admin/assistants/assistant/add/")
    screenshot("empty-form")
    assert page.input_value("#id_default_variables") == ""  # "leave empty for none": no {} to delete first
    assert page.input_value("#id_max_duration_seconds") == "600"

    page.fill("#id_name", "Renewals coach")
    page.check("input[name=kind][value=transient]")
    page.fill("#id_config", CONFIG_WITH_A_MISTAKE)
    page.fill("#id_default_variables", '{"customerName": "there"}')
    follow(page, "input[name=_save]")
    screenshot("json-mistake")

    assert page.locator(".errornote").inner_text() == "Please correct the error below."
    assert field_errors(page, "config") == [
        "This is not valid JSON: line 3, column 3: a comma is missing between two items."
    ]
    assert page.input_value("#id_config") == CONFIG_WITH_A_MISTAKE  # what was typed stays, to fix
    assert not Assistant.objects.exists()

    page.fill("#id_config", CONFIG_WITH_A_MISTAKE.replace('practise?"\n', 'practise?",\n'))
    follow(page, "input[name=_continue]")
    screenshot("saved")

    assistant = Assistant.objects.get()
    assert (assistant.name, assistant.kind, assistant.config) == ("Renewals coach", "transient", CONFIG)
    assert assistant.default_variables == {"customerName": "there"}
    assert success_messages(page) == [
        "The assistant “Renewals coach” was added successfully. You may edit it again below."
    ]
    shown = page.input_value("#id_config")
    assert json.loads(shown) == CONFIG
    assert shown == json.dumps(json.loads(shown), indent=2)  # indented (PostgreSQL's jsonb orders the keys its way)
    assert page.input_value("#id_default_variables") == '{\n  "customerName": "there"\n}'


@pytest.fixture
def coach(db):
    """A transient assistant staff wrote earlier, with one variable the client may send."""
    assistant = Assistant.objects.create(
        name="Renewals coach",
        kind=Assistant.Kind.TRANSIENT,
        config=CONFIG,
        default_variables={"customerName": "there", "companyName": "Acme"},
    )
    assistant.client_variables.create(name="topic", max_length=40)
    return assistant


def test_staff_map_a_user_preview_the_call_and_find_it_in_the_call_log(
    admin_page, live_server, coach, standin_vapi, app_server, sdk_bundle, settings, screenshot
):
    page = admin_page
    # b. An assistant type only mapped users may start, and Ana's mapping with her own values.
    page.goto(f"{live_server.url}/admin/assistants/assistanttype/add/")
    page.fill("#id_slug", "renewals")
    page.fill("#id_description", "Practise renewal conversations")
    page.check("#id_mapped_users_only")
    screenshot("new-type")
    follow(page, "input[name=_save]")
    assert success_messages(page) == ["The assistant type “renewals” was added successfully."]
    screenshot("types")
    assert fits_beside_the_filters(page)

    page.goto(f"{live_server.url}/admin/assistants/usermapping/add/")
    page.fill("#id_user_id", "ana-42")
    pick(page, "assistant_type", "renewals")
    pick(page, "assistant", "Renewals coach")
    page.fill("#id_variable_values", '{"customerName": "Ana"}')
    screenshot("new-mapping")
    follow(page, "input[name=_save]")
    assert success_messages(page) == ["The user mapping “ana-42 → renewals” was added successfully."]
    screenshot("mappings")
    mapping = UserMapping.objects.get()
    assert (mapping.user_id, mapping.assistant_type.slug, mapping.assistant, mapping.variable_values) == (
        "ana-42",
        "renewals",
        coach,
        {"customerName": "Ana"},
    )
    page.goto(f"{live_server.url}/admin/assistants/assistanttype/")
    assert page.inner_text("td.field-who_may_call") == "Only mapped users: 1 mapped user"
    follow(page, page.locator("td.field-who_may_call a"))
    screenshot("the-types-mappings")
    assert page.locator("#result_list tbody tr th a").all_inner_texts() == ["ana-42"]

    # c. The preview, reached from the type's page, shows the exact body Vapi would get.
    page.goto(f"{live_server.url}/admin/assistants/assistanttype/{mapping.assistant_type.pk}/change/")
    follow(page, "#preview-call-link")
    page.fill("#id_user_id", "ana-42")
    page.fill("#id_variables", '{"topic": "a price rise"}')
    follow(page, "#preview-submit")
    screenshot("preview")

    expected_body = {
        "assistant": CONFIG,
        "assistantOverrides": {
            "variableValues": {"customerName": "Ana", "companyName": "Acme", "topic": "a price rise"},
            "metadata": {"userId": "ana-42", "assistantType": "renewals"},
        },
    }
    assert page.input_value("#id_assistant_type") == "renewals"
    assert json.loads(page.inner_text("#preview-body")) == expected_body
    assert page.inner_text("#preview-assistant") == "Assistant: Renewals coach (from this user's mapping)"
    assert standin_vapi.received == [] and not CallLog.objects.exists()

    # d. Ana's app starts the call with the real SDK; an unmapped user is refused.
    open_app(page, app_server, sdk_bundle["vapi-fake-daily.js"], settings)
    overrides = {"variableValues": {"topic": "a price rise"}, "metadata": {"userId": "ana-42"}}
    call = start(page, APP_TOKEN, live_server.url, "renewals", overrides)
    assert call == CLIENT_VIEW
    [received] = standin_vapi.received
    created = CallLog.objects.get()
    assert json.loads(received.body) == {
        **expected_body,
        "assistantOverrides": {
            **expected_body["assistantOverrides"],
            "metadata": {"userId": "ana-42", "assistantType": "renewals", "callLogId": created.pk},
        },
    }
    page.evaluate("window.events = []")
    assert start(page, APP_TOKEN, live_server.url, {"userId": "bo-7", "assistantType": "renewals"}) is None
    assert proxy_error(page)["code"] == "user_not_mapped"
    screenshot("sdk-page")
    rejected = CallLog.objects.get(outcome="rejected")

    page.goto(f"{live_server.url}/admin/calls/calllog/")
    screenshot("call-log")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    assert row_cells(rows.nth(0)) == [
        local_time(rejected.created_at), "Rejected: user_not_mapped", "bo-7", "renewals", "-", "-", "-"
    ]
    assert row_cells(rows.nth(1)) == [
        local_time(created.created_at), "Created", "ana-42", "renewals", "Renewals coach", "-", "-"
    ]
    assert fits_beside_the_filters(page)
    assert page.inner_text("#call-log-count") == "2 entries"
    follow(page, rows.nth(1).locator("th a"))
    page.wait_for_url(f"{live_server.url}/admin/calls/calllog/{created.pk}/change/")
    screenshot("call")
    assert page.inner_text(".field-vapi_call_id .readonly") == CALL["id"]
    assert page.inner_text(".field-user_id .readonly") == "ana-42"

    # e. The CSV of the rows the filtered list shows.
    page.goto(f"{live_server.url}/admin/calls/calllog/")
    follow(page, page.locator("#changelist-filter a", has_text="Created"))
    page.wait_for_url("**/admin/calls/calllog/?outcome__exact=created")
    screenshot("filtered")
    with page.expect_download() as download:
        page.click("#download-csv-link")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert rows == [
        [
            "time (UTC)", "user id", "assistant type", "assistant", "outcome", "status returned", "error code",
            "detail", "call status", "ended reason", "duration (s)", "cost (USD)", "Vapi call id", "request id",
            "route", "origin",
        ],
        [
            timezone.localtime(created.created_at).strftime("%Y-%m-%d %H:%M:%S"), "ana-42", "renewals",
            "Renewals coach", "created", "201", "", "", "", "", "", "", CALL["id"], created.request_id,
            "web", app_server.origin,
        ],
    ]

    # f. Today's bars and numbers on the charts page.
    page.goto(f"{live_server.url}/admin/calls/calllog/")
    follow(page, "#call-charts-link")
    screenshot("charts")
    today = timezone.localdate()
    assert page.inner_text("#chart-totals") == "In total: 2 calls, 1 failure, $0.00."
    assert page.locator("#content-main .module h2").all_inner_texts() == [
        "Calls per day", "Failures per day (rejected or failed)", "Cost per day (USD)"
    ]
    for chart, value in (("calls", "2"), ("failures", "1"), ("cost", "$0.00")):
        bar = page.locator(f"#chart-{chart} rect[data-day='{today.isoformat()}']")
        assert bar.locator("title").text_content() == f"{today:%a %d %b}: {value}"
    assert float(page.locator(f"#chart-calls rect[data-day='{today.isoformat()}']").get_attribute("height")) == 140
    assert "No cost reported in the last 30 days" in page.locator("#chart-cost text").all_text_contents()
    assert page.locator(f"#chart-data tr[data-day='{today.isoformat()}'] td").all_inner_texts() == [
        date_format(today, "D d M Y"), "2", "1", "0.0000"
    ]


def test_the_call_log_time_fits_on_one_line(admin_page, live_server, coach, screenshot):
    """On a laptop's 1280 px beside the filters, with the wide cells real rows bring."""
    now = timezone.now()
    CallLog.objects.create(
        request_id="a", created_at=now, user_id="ana.lopez@example-company.com", assistant_type="renewals",
        assistant=coach, outcome="created", call_status="ended", duration_seconds=754, cost=Decimal("1.4321"),
    )
    CallLog.objects.create(
        request_id="b", created_at=now - timedelta(hours=5), user_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
        assistant_type="customer-support", outcome="rejected", error_code="variable_not_allowed",
    )
    CallLog.objects.create(
        request_id="c", created_at=now - timedelta(days=1), user_id="bo-7", assistant_type="renewals",
        assistant=coach, outcome="failed", error_code="upstream_timeout",
    )

    admin_page.goto(f"{live_server.url}/admin/calls/calllog/")
    screenshot("call-log")

    times = admin_page.locator("#result_list .field-time a")
    assert times.count() == 3
    assert times.evaluate_all("links => links.map(link => link.getClientRects().length)") == [1, 1, 1]
    assert fits_beside_the_filters(admin_page)


def row_cells(row) -> list[str]:
    return [cell.strip() for cell in row.locator("th, td:not(.action-checkbox)").all_inner_texts()]


def fits_beside_the_filters(page) -> bool:
    """The list's table is no wider than the space it has: no column hides behind a scroll bar."""
    return page.evaluate(
        "() => { const box = document.querySelector('.results'); return box.scrollWidth <= box.clientWidth; }"
    )


def test_staff_restore_an_older_config_from_the_history(admin_page, live_server, coach, screenshot):
    page = admin_page
    page.goto(f"{live_server.url}/admin/assistants/assistant/{coach.pk}/change/")
    newer = {**CONFIG, "firstMessage": "Hello {{customerName}}."}
    page.fill("#id_config", json.dumps(newer))
    follow(page, "input[name=_continue]")
    screenshot("changed")
    coach.refresh_from_db()
    assert coach.config == newer

    follow(page, "a.historylink")
    screenshot("history")
    assert page.inner_text("#history-intro") == (
        "Every saved version, newest first, with who saved it. Open a version (its date) to see it and, if you "
        "want it back, restore it."
    )
    versions = page.locator("#change-history tbody tr")
    assert versions.count() == 2
    created, changed = coach.history.order_by("history_date")
    assert cells(versions.nth(0)) == [
        local_time(changed.history_date),
        "Changed",
        "staff",
        'Assistant config, firstMessage: "Hi {{customerName}}, ready to practise?" → "Hello {{customerName}}."',
    ]
    assert cells(versions.nth(1)) == [local_time(created.history_date), "Created", "-", ""]

    follow(page, versions.nth(1).locator("a", has_text=local_time(created.history_date)))
    screenshot("older-version")
    assert page.inner_text("#version-intro") == (
        f"Saved on {local_time(created.history_date)}: this is how “Renewals coach” was then. "
        "Press Restore this version at the bottom to make it the current one again; you may change fields first. "
        "Its client variables are not part of the version and stay as they are now."
    )
    assert json.loads(page.input_value("#id_config")) == CONFIG

    follow(page, "input[value='Restore this version']")
    screenshot("restored")
    assert page.url == f"{live_server.url}/admin/assistants/assistant/{coach.pk}/change/"
    assert success_messages(page) == [
        f"Restored “Renewals coach” to its version of {local_time(created.history_date)}: the restore is the newest "
        "entry in its history, so it can be undone the same way."
    ]
    assert json.loads(page.input_value("#id_config")) == CONFIG
    coach.refresh_from_db()
    assert coach.config == CONFIG
    assert coach.history.count() == 3

    follow(page, "a.historylink")
    screenshot("history-after-restore")
    restore = page.locator("#change-history tbody tr").nth(0)
    assert cells(restore)[1:3] == [f"Restored the version of {local_time(created.history_date)}", "staff"]


def cells(row) -> list[str]:
    return [" ".join(cell.split()) for cell in row.locator("td").all_inner_texts()]



def test_staff_import_assistants_from_vapi(admin_page, live_server, coach, standin_vapi, screenshot):
    Assistant.objects.create(name="Old name", kind=Assistant.Kind.PERMANENT, vapi_assistant_id=PERMANENT_ID)
    standin_vapi.reply_to_get(
        "/assistant",
        200,
        json.dumps(
            [
                {"id": "0d9f3a5e-1b2c-4d6e-8f70-1a2b3c4d5e6f", "name": "Front desk"},
                {"id": PERMANENT_ID, "name": "Support line"},
            ]
        ).encode(),
    )
    page = admin_page
    page.goto(f"{live_server.url}/admin/assistants/assistant/")
    screenshot("assistants")
    follow(page, "#import-from-vapi-button")
    screenshot("imported")

    assert success_messages(page) == ["Created 1: Front desk; renamed 1: Old name → Support line; unchanged 0."]
    [received] = standin_vapi.received
    assert (received.method, received.path) == ("GET", "/assistant?limit=1000")
    rows = page.locator("#result_list tbody tr")
    assert [row_cells(rows.nth(i))[:3] for i in range(3)] == [
        ["Front desk", "Permanent", "0d9f3a5e-1b2c-4d6e-8f70-1a2b3c4d5e6f"],
        ["Renewals coach", "Transient", "-"],
        ["Support line", "Permanent", PERMANENT_ID],
    ]
    assert fits_beside_the_filters(page)


def test_staff_find_the_tools_on_the_admin_home(admin_page, live_server, screenshot):
    page = admin_page
    page.goto(f"{live_server.url}/admin/")
    screenshot("admin-home")

    for link_id, text in (("#index-preview-call-link", "Preview a call"), ("#index-call-charts-link", "Call charts")):
        link = page.locator(link_id)
        box = link.bounding_box()
        assert link.inner_text() == text
        # On one line, not a letter per line (the admin's dashboard styles once squeezed it so).
        assert box["width"] > 3 * box["height"]
    follow(page, "#index-call-charts-link")
    assert page.locator("h1").inner_text() == "Call charts: the last 30 days"
