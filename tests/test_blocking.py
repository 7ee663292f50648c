"""Staff block a user in the admin, and can end their live calls through Vapi's call control."""

import json
from http import HTTPStatus

import pytest
from django.contrib.messages import get_messages

from assistants.models import EndUser
from calls.models import CallLog
from tests.conftest import TEST_VAPI_KEY, load_fixture, post_call

CONTROL_URL = load_fixture("vapi_call_web_201.json")["monitor"]["controlUrl"]
START = {"userId": "bob", "assistantType": "sales-coach"}


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run_action(admin_client, action, *users):
    response = admin_client.post(
        "/admin/assistants/enduser/",
        {"action": action, "_selected_action": [user.pk for user in users]},
        follow=True,
    )
    assert response.status_code == HTTPStatus.OK
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_a_blocked_user_cannot_start_calls(admin_client, client, sales_coach, fake_vapi):
    bob = EndUser.objects.create(user_id="bob")

    assert run_action(admin_client, "block", bob) == ["Blocked 1 user(s). Calls already running go on."]
    response = post_call(client, START)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["code"] == "user_blocked"
    assert fake_vapi.requests == []


def test_unblocking_lets_the_user_start_calls_again(admin_client, client, sales_coach, fake_vapi):
    bob = EndUser.objects.create(user_id="bob", is_blocked=True)

    assert run_action(admin_client, "unblock", bob) == ["Unblocked 1 user(s)."]

    assert post_call(client, START).status_code == HTTPStatus.CREATED


def test_the_control_url_is_kept_but_never_shown(admin_client, client, sales_coach, fake_vapi):
    response = post_call(client, START)
    log = CallLog.objects.get()

    assert log.control_url == CONTROL_URL
    assert CONTROL_URL not in response.content.decode()
    page = admin_client.get(f"/admin/calls/calllog/{log.pk}/change/")
    assert page.status_code == HTTPStatus.OK
    assert CONTROL_URL not in page.content.decode()


def test_blocking_and_ending_live_calls_posts_end_call_to_the_control_url(
    admin_client, client, sales_coach, fake_vapi
):
    post_call(client, START)
    bob = EndUser.objects.create(user_id="bob")

    messages = run_action(admin_client, "block_and_end_live_calls", bob)

    assert messages == ["User bob: blocked; ended 1 live call(s)."]
    end = fake_vapi.requests[-1]
    assert (end.method, str(end.url), json.loads(end.content)) == ("POST", CONTROL_URL, {"type": "end-call"})
    assert "authorization" not in end.headers  # the control URL is its own credential; the key stays home
    assert TEST_VAPI_KEY not in str(end.headers)
    assert CallLog.objects.get().ended_reason == "ended-by-staff"
    assert EndUser.objects.get().is_blocked


def test_calls_that_already_ended_are_not_asked_to_end(admin_client, client, sales_coach, fake_vapi):
    post_call(client, START)
    CallLog.objects.update(call_status="ended")
    bob = EndUser.objects.create(user_id="bob")

    messages = run_action(admin_client, "block_and_end_live_calls", bob)

    assert messages == ["User bob: blocked; ended 0 live call(s)."]
    assert len(fake_vapi.requests) == 1  # only the call start


def test_a_call_vapi_cannot_end_is_reported(admin_client, client, sales_coach, fake_vapi):
    post_call(client, START)
    fake_vapi.reply(500, {"message": "boom"})
    bob = EndUser.objects.create(user_id="bob")

    messages = run_action(admin_client, "block_and_end_live_calls", bob)

    assert messages == ["User bob: blocked; ended 0 live call(s), 1 could not be ended (see the server log)."]
    assert CallLog.objects.get().ended_reason == ""
    assert EndUser.objects.get().is_blocked
