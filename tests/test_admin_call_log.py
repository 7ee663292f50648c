"""The call log for staff: the columns they scan, a CSV of what the list shows, and per-day charts."""

import csv
import io
import re
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from calls.models import CallLog
from calls.stats import DayStats, daily_call_stats
from tests.test_admin import CALL_ID, call_logs  # noqa: F401 (a fixture)

CHANGELIST = "/admin/calls/calllog/"
CSV_URL = "/admin/calls/calllog/export.csv"
CONTROL_URL = "https://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/3f1c9a52/control"
HEADER = [
    "time (UTC)",
    "user id",
    "assistant type",
    "assistant",
    "outcome",
    "status returned",
    "error code",
    "detail",
    "call status",
    "ended reason",
    "duration (s)",
    "cost (USD)",
    "Vapi call id",
    "request id",
    "route",
    "origin",
]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def reported(call_logs):  # noqa: F811
    """The created call has had its end-of-call report: duration, cost, and a control URL kept."""
    log = call_logs["created"]
    log.call_status = "ended"
    log.ended_reason = "customer-ended-call"
    log.duration_seconds = 82.5
    log.cost = Decimal("0.1234")
    log.control_url = CONTROL_URL
    log.origin = "https://app.example.com"
    log.save()
    return call_logs


def download(admin_client, params=None) -> list[list[str]]:
    response = admin_client.get(CSV_URL, params or {})
    assert response.status_code == HTTPStatus.OK
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="call-log-')
    text = b"".join(response.streaming_content).decode()
    assert CONTROL_URL not in text
    return list(csv.reader(io.StringIO(text)))


CREATED_ROW = [
    "2026-11-02 09:30:00",
    "alice",
    "sales-coach",
    "Premium coach",
    "created",
    "201",
    "",
    "",
    "ended",
    "customer-ended-call",
    "82.5",
    "0.123400",
    CALL_ID,
    "req-created",
    "web",
    "https://app.example.com",
]
REJECTED_ROW = [
    "2026-12-01 10:00:00",
    "bob",
    "sales-coach",
    "Sales coach",
    "rejected",
    "400",
    "variable_not_allowed",
    "Variable 'model' may not be set by the client for 'sales-coach' (allowed: topic).",
    "",
    "",
    "",
    "",
    "",
    "req-rejected",
    "web",
    "",
]
FAILED_ROW = [
    "2026-12-03 08:00:00",
    "carol",
    "sales-coach",
    "Sales coach",
    "failed",
    "504",
    "upstream_timeout",
    "Vapi did not answer in time; the call may not have started.",
    "",
    "",
    "",
    "",
    "",
    "req-failed",
    "web",
    "",
]


def test_the_csv_has_every_row_the_list_shows_with_plain_headers_and_no_secrets(admin_client, reported):
    assert download(admin_client) == [HEADER, FAILED_ROW, REJECTED_ROW, CREATED_ROW]


@pytest.mark.parametrize(
    ("params", "rows"),
    [
        ({"outcome__exact": "failed"}, [FAILED_ROW]),
        ({"q": "alice"}, [CREATED_ROW]),
        ({"created_at__year": "2026", "created_at__month": "12"}, [FAILED_ROW, REJECTED_ROW]),
        ({"created_at__year": "2026", "created_at__month": "12", "q": "bob"}, [REJECTED_ROW]),
        ({"o": "3"}, [CREATED_ROW, REJECTED_ROW, FAILED_ROW]),  # ordered by user id (third column), as the list can be
        ({"outcome__exact": "pending"}, []),
    ],
)
def test_the_csv_follows_the_lists_filters_search_and_order(admin_client, reported, params, rows):
    assert download(admin_client, params) == [HEADER, *rows]


def test_the_csv_filters_by_assistant_and_type(admin_client, reported, alice):
    by_assistant = download(admin_client, {"assistant__id__exact": alice.assistant.pk})
    by_type = download(admin_client, {"assistant_type": "sales-coach"})
    by_other_type = download(admin_client, {"assistant_type": "support"})

    assert by_assistant == [HEADER, CREATED_ROW]
    assert by_type == [HEADER, FAILED_ROW, REJECTED_ROW, CREATED_ROW]
    assert by_other_type == [HEADER]


def test_the_csv_shows_times_in_the_deployments_time_zone(admin_client, reported, settings):
    settings.TIME_ZONE = "America/New_York"

    rows = download(admin_client, {"q": "alice"})

    assert rows[0][0] == "time (America/New_York)"
    assert rows[1][0] == "2026-11-02 04:30:00"


def test_the_list_and_a_rows_page_write_times_alike_in_the_deployments_time_zone(admin_client, reported, settings):
    settings.TIME_ZONE = "America/New_York"
    log = reported["created"]
    log.started_at = utc(2026, 11, 2, 9, 30, 2)
    log.ended_at = utc(2026, 11, 2, 9, 31, 24)
    log.save()

    listed = admin_client.get(CHANGELIST)
    page = admin_client.get(f"/admin/calls/calllog/{log.pk}/change/")

    assertContains(listed, '<span id="call-log-time-zone">times in America/New_York</span>', html=True)
    assertContains(
        listed,
        f'<th class="field-time"><a href="/admin/calls/calllog/{log.pk}/change/">'
        '<span class="nowrap">2026-11-02 04:30:00</span></a></th>',
        html=True,
    )
    assertContains(page, "<h2>2026-11-02 04:30:00 alice sales-coach created</h2>", html=True)
    for label, shown in (("Time", "04:30:00"), ("Call started", "04:30:02"), ("Call ended", "04:31:24")):
        assertContains(
            page,
            f'<div class="flex-container"><label>{label} (America/New_York):</label>'
            f'<div class="readonly"><span class="nowrap">2026-11-02 {shown}</span></div></div>',
            html=True,
        )


def test_a_call_not_reported_yet_shows_its_start_and_end_as_a_dash(admin_client, reported):
    page = admin_client.get(f"/admin/calls/calllog/{reported['rejected'].pk}/change/")

    for label in ("Call started", "Call ended"):
        shown = f'<div class="flex-container"><label>{label} (UTC):</label><div class="readonly">-</div></div>'
        assertContains(page, shown, html=True)


def test_a_user_id_that_looks_like_a_formula_is_kept_as_text(admin_client, db):
    CallLog.objects.create(request_id="req-evil", user_id='=HYPERLINK("https://evil.example")', outcome="rejected")

    rows = download(admin_client)

    assert rows[1][1] == '\'=HYPERLINK("https://evil.example")'


def test_the_list_links_the_csv_of_what_it_shows_and_the_charts(admin_client, reported):
    response = admin_client.get(CHANGELIST, {"outcome__exact": "failed", "q": "carol"})

    assertContains(response, f'href="{CSV_URL}?outcome__exact=failed&amp;q=carol" id="download-csv-link"')
    assertContains(response, 'href="/admin/calls/calllog/charts/" id="call-charts-link"')


def test_an_unknown_filter_in_the_csv_link_is_a_message_not_an_error(admin_client, reported):
    response = admin_client.get(CSV_URL, {"no_such_field": "1"}, follow=True)

    assert response.redirect_chain == [(CHANGELIST, HTTPStatus.FOUND)]
    assert [m.message for m in response.context["messages"]] == [
        "That filter does not apply to the call log; nothing was downloaded."
    ]


def test_the_list_shows_duration_and_cost_readably_and_blanks_as_a_dash(admin_client, reported):
    response = admin_client.get(CHANGELIST)

    assertContains(response, '<td class="field-duration"><span class="nowrap">1 min 23 s</span></td>', html=True)
    assertContains(response, '<td class="field-cost_usd">$0.1234</td>', html=True)
    assertContains(response, '<td class="field-duration">-</td>', count=2, html=True)
    assertContains(response, '<td class="field-cost_usd">-</td>', count=2, html=True)
    assertNotContains(response, CONTROL_URL)


def test_the_lists_outcome_column_carries_the_error_code_or_vapis_call_status(admin_client, reported):
    response = admin_client.get(CHANGELIST)

    rows = response.context["cl"].result_list
    outcome = response.context["cl"].model_admin.outcome_summary
    assert {log.request_id: outcome(log) for log in rows} == {
        "req-created": "Created, ended",
        "req-rejected": "Rejected: variable_not_allowed",
        "req-failed": "Failed: upstream_timeout",
    }
    assertContains(response, '<td class="field-outcome_summary">Created, ended</td>', html=True)
    assertContains(response, '<span id="call-log-count">3 entries</span>', html=True)


def test_the_assistant_filter_names_the_rows_without_an_assistant(admin_client, reported):
    CallLog.objects.create(request_id="req-unmapped", user_id="dan", outcome="rejected", error_code="user_not_mapped")

    response = admin_client.get(CHANGELIST)
    without = admin_client.get(CHANGELIST, {"assistant__isnull": "True"})

    assertContains(
        response,
        '<a href="?assistant__isnull=True">None (refused before one was chosen, or deleted)</a>',
        html=True,
    )
    assert [log.request_id for log in without.context["cl"].result_list] == ["req-unmapped"]


@pytest.mark.parametrize(
    "field, label",
    [
        ("assistant_type", "None (refused before it was read)"),
        ("call_status", "Not reported by Vapi"),
        ("error_code", "None"),
    ],
)
def test_the_text_filters_name_their_empty_value(admin_client, reported, field, label):
    CallLog.objects.create(request_id="req-bare", outcome="rejected")

    response = admin_client.get(CHANGELIST)
    bare = admin_client.get(CHANGELIST, {field: ""})

    assertContains(response, f'<a href="?{field}=">{label}</a>', html=True)
    rows = bare.context["cl"].result_list
    assert "req-bare" in [log.request_id for log in rows]
    assert {getattr(log, field) for log in rows} == {""}


def test_staff_without_the_call_log_cannot_download_it(client, django_user_model, reported):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)

    assert client.get(CSV_URL).status_code == HTTPStatus.FORBIDDEN
    assert client.get("/admin/calls/calllog/charts/").status_code == HTTPStatus.FORBIDDEN


# --- Charts ----------------------------------------------------------------------------------------


def logged(created_at: datetime, outcome: str, cost: str | None = None, request_id: str = "r"):
    return CallLog.objects.create(
        request_id=request_id, created_at=created_at, outcome=outcome, cost=Decimal(cost) if cost else None
    )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


def test_daily_stats_count_calls_failures_and_cost_per_local_day_with_empty_days_as_zero(db, settings):
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+1 in December
    logged(utc(2026, 11, 28, 22, 59), "created", "9.99")  # 23:59 on the 28th in Berlin: before the window
    logged(utc(2026, 11, 28, 23, 0), "created", "0.50")  # 00:00 on the 29th in Berlin
    logged(utc(2026, 11, 29, 12, 0), "rejected")
    logged(utc(2026, 11, 29, 12, 5), "failed")
    logged(utc(2026, 12, 1, 22, 30), "created", "0.25")  # 23:30 on the 1st in Berlin
    logged(utc(2026, 12, 1, 23, 30), "created", "1.125")  # 00:30 on the 2nd in Berlin
    logged(utc(2026, 12, 1, 23, 45), "pending")
    logged(utc(2026, 12, 3, 8, 0), "created")  # no report yet: no cost

    stats = daily_call_stats(days=5, now=utc(2026, 12, 3, 10, 0))

    assert stats == [
        DayStats(date(2026, 11, 29), calls=3, failures=2, cost=Decimal("0.50")),
        DayStats(date(2026, 11, 30), calls=0, failures=0, cost=Decimal("0")),
        DayStats(date(2026, 12, 1), calls=1, failures=0, cost=Decimal("0.25")),
        DayStats(date(2026, 12, 2), calls=2, failures=0, cost=Decimal("1.125")),
        DayStats(date(2026, 12, 3), calls=1, failures=0, cost=Decimal("0")),
    ]


def test_daily_stats_cover_thirty_days_ending_today_in_the_time_zone(db, settings):
    settings.TIME_ZONE = "America/Los_Angeles"
    now = utc(2026, 12, 3, 5, 0)  # still the 2nd in Los Angeles

    stats = daily_call_stats(now=now)

    assert len(stats) == 30
    assert (stats[0].day, stats[-1].day) == (date(2026, 11, 3), date(2026, 12, 2))
    assert all((day.calls, day.failures, day.cost) == (0, 0, Decimal(0)) for day in stats)


def test_the_charts_page_draws_three_charts_and_lists_the_numbers(admin_client, db):
    now = timezone.now()
    today = timezone.localdate(now)
    logged(now - timedelta(minutes=5), "created", "0.40", "a")
    logged(now - timedelta(minutes=4), "failed", None, "b")
    logged(now - timedelta(minutes=3), "rejected", None, "c")

    response = admin_client.get("/admin/calls/calllog/charts/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["stats"][-1] == DayStats(today, calls=3, failures=2, cost=Decimal("0.40"))
    for chart_id in ("chart-calls", "chart-failures", "chart-cost"):
        assertContains(response, f'<svg id="{chart_id}" role="img"', count=1)
    assertContains(response, f'data-day="{today.isoformat()}"><title>{today:%a %d %b}: 3</title></rect>')
    assertContains(response, f'data-day="{today.isoformat()}"><title>{today:%a %d %b}: $0.40</title></rect>')
    assertContains(
        response,
        f'<tr data-day="{today.isoformat()}"><td>{today:%a %d %b %Y}</td><td>3</td><td>2</td><td>0.4000</td></tr>',
        html=True,
    )
    assertContains(response, '<p id="chart-totals">In total: 3 calls, 2 failures, $0.40.</p>', html=True)
    for title in ("Calls per day", "Failures per day (rejected or failed)", "Cost per day (USD)"):
        assertContains(response, f"<h2>{title}</h2>", count=1, html=True)  # not only in a tooltip
    assertNotContains(response, 'src="http')  # nothing fetched from elsewhere


def test_the_charts_total_says_one_call_and_one_failure_in_the_singular(admin_client, db):
    logged(timezone.now(), "rejected", None, "a")

    response = admin_client.get("/admin/calls/calllog/charts/")

    assertContains(response, '<p id="chart-totals">In total: 1 call, 1 failure, $0.00.</p>', html=True)


def test_a_cost_under_a_cent_is_shown_in_hundredths_of_a_cent_not_as_nothing(admin_client, db):
    today = timezone.localdate()
    logged(timezone.now(), "created", "0.0042", "a")

    response = admin_client.get("/admin/calls/calllog/charts/")

    assertContains(response, '<p id="chart-totals">In total: 1 call, 0 failures, $0.0042.</p>', html=True)
    assertContains(response, f'data-day="{today.isoformat()}"><title>{today:%a %d %b}: $0.0042</title></rect>')
    assert "$0.00</text>" not in chart(response, "chart-cost")


def chart(response, chart_id: str) -> str:
    return re.search(rf'<svg id="{chart_id}".*?</svg>', response.content.decode(), re.S).group()


def test_a_chart_of_nothing_but_zeros_says_there_is_nothing_instead_of_a_zero_scale(admin_client, db):
    logged(timezone.now(), "created", None, "a")  # one call, no failure, no cost reported yet

    response = admin_client.get("/admin/calls/calllog/charts/")

    calls, failures, cost = (chart(response, f"chart-{name}") for name in ("calls", "failures", "cost"))
    assert "No failures in the last 30 days" in failures
    assert "No cost reported in the last 30 days" in cost
    assert "$0.00</text>" not in cost and ">0</text>" not in cost and ">0</text>" not in failures
    assert "No calls" not in calls and ">1</text>" in calls and ">0</text>" in calls  # a scale where there is something


def test_the_charts_are_linked_from_the_admin_index(admin_client, db):
    assertContains(admin_client.get("/admin/"), 'href="/admin/calls/calllog/charts/" id="index-call-charts-link"')
