"""The admin's call preview: what Vapi would receive, built by the live path's code, without calling Vapi."""

import json
from http import HTTPStatus

import pytest
from pytest_django.asserts import assertContains

from assistants.models import AssistantType, EndUser
from calls.models import CallLog
from tests.conftest import PERMANENT_ID, post_call

PREVIEW = "/admin/assistants/assistanttype/preview/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def preview(admin_client, *, user_id, assistant_type, variables=""):
    return admin_client.get(PREVIEW, {"assistant_type": assistant_type, "user_id": user_id, "variables": variables})


def previewed_body(response) -> dict:
    assert response.status_code == HTTPStatus.OK
    assert "refusal" not in response.context, response.context["refusal"].message
    return json.loads(response.context["body_json"])


def live_body(client, fake_vapi, *, user_id, assistant_type, variables) -> dict:
    """What fake Vapi received for the same start through POST /call/web, without the call-log id."""
    started = post_call(
        client, {"assistant": {"userId": user_id, "assistantType": assistant_type, "variableValues": variables}}
    )
    assert started.status_code == HTTPStatus.CREATED
    received = fake_vapi.last_json
    assert received["assistantOverrides"]["metadata"].pop("callLogId") == CallLog.objects.latest("pk").pk
    return received


@pytest.mark.parametrize(
    ("user_id", "variables"),
    [
        ("alice", {"topic": "renewals"}),  # her mapping: a permanent assistant with her own values
        ("alice", {"topic": "renewals", "customerName": "Client says"}),  # the mapping's value wins
        ("bob", {}),  # no mapping: the type's transient default
        ("bob", {"topic": "pricing"}),
    ],
)
def test_the_preview_is_exactly_what_vapi_receives_for_the_same_start(
    admin_client, client, fake_vapi, alice, user_id, variables
):
    shown = previewed_body(
        preview(admin_client, user_id=user_id, assistant_type="sales-coach", variables=json.dumps(variables))
    )
    requests_before = len(fake_vapi.requests)
    logs_before = CallLog.objects.count()

    received = live_body(client, fake_vapi, user_id=user_id, assistant_type="sales-coach", variables=variables)

    assert requests_before == 0 and logs_before == 0  # the preview itself asked Vapi nothing, logged nothing
    assert shown == received


def test_the_preview_shows_the_body_and_which_assistant_answers(admin_client, alice):
    response = preview(admin_client, user_id="alice", assistant_type="sales-coach", variables='{"topic": "renewals"}')

    assert previewed_body(response) == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "topic": "renewals", "customerName": "Alice A."},
            "metadata": {"userId": "alice", "assistantType": "sales-coach"},
        },
    }
    assertContains(response, '<pre id="preview-body"', count=1)
    assertContains(response, "Premium coach</a>")
    assertContains(response, "this user's mapping</a>")


@pytest.mark.parametrize(
    ("user_id", "assistant_type", "variables", "status", "code", "message"),
    [
        (
            "bob",
            "support",
            "",
            403,
            "user_not_mapped",
            "User 'bob' has no assistant for 'support': ask staff to map this user (this type is for mapped users only).",
        ),
        ("bob", "retired", "", 404, "unknown_assistant_type", "Assistant type 'retired' does not exist or is not active."),
        ("mallory", "sales-coach", "", 403, "user_blocked", "This user may not start calls; contact support."),
        (
            "bob",
            "sales-coach",
            '{"model": "gpt-4"}',
            400,
            "variable_not_allowed",
            "Variable 'model' may not be set by the client for 'sales-coach' (allowed: topic).",
        ),
        ("bob", "sales-coach", '{"topic": "x' + "y" * 30 + '"}', 400, "invalid_variable",
         "Variable 'topic' must be text of at most 20 characters."),
    ],
)
def test_the_preview_says_in_words_why_a_live_call_would_be_refused(
    admin_client, client, alice, user_id, assistant_type, variables, status, code, message
):
    AssistantType.objects.create(slug="support", mapped_users_only=True)
    AssistantType.objects.create(slug="retired", is_active=False, default_assistant=alice.assistant)
    EndUser.objects.create(user_id="mallory", is_blocked=True)

    shown = preview(admin_client, user_id=user_id, assistant_type=assistant_type, variables=variables)
    live = post_call(
        client,
        {
            "assistant": {
                "userId": user_id,
                "assistantType": assistant_type,
                "variableValues": json.loads(variables or "{}"),
            }
        },
    )

    assert shown.status_code == HTTPStatus.OK
    refusal = shown.context["refusal"]
    assert (refusal.status, refusal.code, refusal.message) == (status, code, message)
    assert (live.status_code, live.json()["code"], live.json()["message"]) == (status, code, message)
    assertContains(shown, f'<p id="preview-refusal-message">{message}</p>'.replace("'", "&#x27;"), html=True)
    assert "body_json" not in shown.context


def test_the_preview_refuses_variables_that_are_not_a_json_object(admin_client, alice):
    broken = preview(admin_client, user_id="bob", assistant_type="sales-coach", variables='{"topic": }')
    a_list = preview(admin_client, user_id="bob", assistant_type="sales-coach", variables='["renewals"]')

    assert broken.context["form"].errors == {
        "variables": [
            'This is not valid JSON: line 1, column 11: a value is missing or not JSON (text needs double quotes, '
            'e.g. "Hi").'
        ]
    }
    assert a_list.context["form"].errors == {
        "variables": ['Enter a JSON object such as {"topic": "renewals"}, or leave this empty.']
    }


def test_the_preview_lists_every_type_and_marks_inactive_ones(admin_client, alice):
    AssistantType.objects.create(slug="retired", is_active=False)

    response = admin_client.get(PREVIEW, {"assistant_type": "sales-coach"})

    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].fields["assistant_type"].choices == [
        ("", "---------"),
        ("retired", "retired (inactive)"),
        ("sales-coach", "sales-coach"),
    ]
    assertContains(response, '<option value="sales-coach" selected>sales-coach</option>', html=True)
    assert "body_json" not in response.context and "refusal" not in response.context


def test_the_preview_warns_when_live_calls_have_no_vapi_key(admin_client, alice, settings):
    settings.VAPI_API_KEY = ""

    response = preview(admin_client, user_id="alice", assistant_type="sales-coach")

    assertContains(response, 'id="preview-no-key"')
    assert previewed_body(response)["assistantId"] == PERMANENT_ID


def test_the_preview_is_linked_from_the_assistant_and_type_pages_and_the_index(admin_client, alice):
    pages = {
        "/admin/": 'id="index-preview-call-link"',
        "/admin/assistants/assistant/": 'id="preview-call-link"',
        f"/admin/assistants/assistant/{alice.assistant.pk}/change/": 'id="preview-call-link"',
        "/admin/assistants/assistanttype/": 'id="preview-call-link"',
        f"/admin/assistants/assistanttype/{alice.assistant_type.pk}/change/": (
            f'href="{PREVIEW}?assistant_type=sales-coach" id="preview-call-link"'
        ),
    }
    for url, link in pages.items():
        assertContains(admin_client.get(url), link, msg_prefix=url)


def test_the_preview_needs_a_staff_login(client, alice):
    response = client.get(PREVIEW, {"assistant_type": "sales-coach", "user_id": "alice"})

    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"].startswith("/admin/login/")
