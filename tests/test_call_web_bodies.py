"""How POST /call/web reads a body and resolves it: accepted shapes, what Vapi receives, refusals."""

from http import HTTPStatus

import pytest

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from calls.models import CallLog
from tests.conftest import PERMANENT_ID, post_call

VAPI_CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"
CREATED_ANSWER = {
    "id": VAPI_CALL_ID,
    "webCallUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1",
    "status": "queued",
    "type": "webCall",
    "createdAt": "2026-12-03T10:15:00.000Z",
    "artifactPlan": {"recordingEnabled": True, "videoRecordingEnabled": False},
    "transport": {
        "provider": "daily",
        "assistantVideoEnabled": False,
        "callUrl": "https://vapi.daily.co/Zx8kP2mQ7rT1",
    },
    "assistant": {"voice": {"provider": "vapi"}},
}
OVERRIDE_REFUSAL = (
    "is not accepted: the proxy sets what the assistant is and does; "
    "send only userId, assistantType and allowed variableValues."
)


def assert_created(response, fake_vapi, *, user_id: str, assistant_type: str, assistant) -> CallLog:
    """A 201 with what the SDK needs, one Vapi request, and a settled `created` row; returns the row."""
    assert response.status_code == HTTPStatus.CREATED
    assert response.json() == CREATED_ANSWER
    assert len(fake_vapi.requests) == 1
    log = CallLog.objects.get()
    assert (
        log.outcome,
        log.status_code,
        log.upstream_status,
        log.vapi_call_id,
        log.error_code,
        log.error_detail,
        log.user_id,
        log.assistant_type,
        log.assistant,
        log.request_id,
    ) == ("created", 201, 201, VAPI_CALL_ID, "", "", user_id, assistant_type, assistant, response["X-Request-ID"])
    return log


def assert_refused(
    response, fake_vapi, status: HTTPStatus, code: str, message: str, *, user_id="", assistant_type="", assistant=None
):
    """The JSON error a developer sees, one `rejected` row saying the same, and nothing sent to Vapi."""
    assert response.status_code == status
    assert response.json() == {
        "statusCode": status.value,
        "error": status.phrase,
        "message": message,
        "code": code,
        "requestId": response["X-Request-ID"],
    }
    log = CallLog.objects.get()
    assert (
        log.outcome,
        log.status_code,
        log.upstream_status,
        log.vapi_call_id,
        log.error_code,
        log.error_detail,
        log.user_id,
        log.assistant_type,
        log.assistant,
        log.request_id,
    ) == ("rejected", status.value, None, None, code, message, user_id, assistant_type, assistant, response["X-Request-ID"])
    assert fake_vapi.requests == []


def default_upstream_body(sales_coach, log, *, user_id="c1", variables=None) -> dict:
    return {
        "assistant": sales_coach.default_assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there", **(variables or {})},
            "metadata": {"userId": user_id, "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }


# --- every accepted shape ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"assistant": {"userId": "c1", "assistantType": "sales-coach"}}, id="assistant"),
        pytest.param(
            {"assistant": {"metadata": {"userId": "c1", "assistantType": "sales-coach"}}}, id="assistant-metadata"
        ),
        pytest.param(
            {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "c1"}}},
            id="assistantId-with-overrides-metadata",
        ),
        pytest.param({"userId": "c1", "assistantType": "sales-coach"}, id="top-level"),
    ],
)
def test_every_shape_without_variables_reaches_vapi_with_the_same_body(client, sales_coach, fake_vapi, body):
    response = post_call(client, body)

    log = assert_created(
        response, fake_vapi, user_id="c1", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
    assert fake_vapi.last_json == default_upstream_body(sales_coach, log)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "assistantId": "sales-coach",
                "assistantOverrides": {"variableValues": {"topic": "pricing"}, "metadata": {"userId": "c1"}},
            },
            id="assistantId-with-overrides",
        ),
        pytest.param(
            {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "pricing"}}, id="top-level"
        ),
        pytest.param(
            {
                "assistant": {"userId": "c1", "assistantType": "sales-coach"},
                "assistantOverrides": {"variableValues": {"topic": "pricing"}},
            },
            id="start-object-with-overrides",
        ),
        pytest.param(
            {"assistant": {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "pricing"}}},
            id="assistant-variables",
        ),
    ],
)
def test_every_shape_with_variables_reaches_vapi_with_the_same_body(client, sales_coach, fake_vapi, body):
    response = post_call(client, body)

    log = assert_created(
        response, fake_vapi, user_id="c1", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
    assert fake_vapi.last_json == default_upstream_body(sales_coach, log, variables={"topic": "pricing"})


def test_an_integer_user_id_is_sent_as_text(client, sales_coach, fake_vapi):
    response = post_call(client, {"assistant": {"userId": 42, "assistantType": "sales-coach"}})

    log = assert_created(
        response, fake_vapi, user_id="42", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
    assert fake_vapi.last_json == default_upstream_body(sales_coach, log, user_id="42")


def test_the_same_field_given_twice_with_the_same_value_is_accepted(client, sales_coach, fake_vapi):
    response = post_call(
        client,
        {
            "assistant": {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "pricing"}},
            "assistantId": "sales-coach",
            "assistantOverrides": {"variableValues": {"topic": "pricing"}, "metadata": {"userId": "c1"}},
        },
    )

    log = assert_created(
        response, fake_vapi, user_id="c1", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
    assert fake_vapi.last_json == default_upstream_body(sales_coach, log, variables={"topic": "pricing"})


# --- what Vapi receives ------------------------------------------------------------------------


def test_a_mapped_user_gets_the_permanent_assistant_by_its_stored_id(client, alice, fake_vapi):
    response = post_call(client, {"assistant": {"userId": "alice", "assistantType": "sales-coach"}})

    log = assert_created(response, fake_vapi, user_id="alice", assistant_type="sales-coach", assistant=alice.assistant)
    assert fake_vapi.last_json == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "Alice A."},
            "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }


def test_variables_merge_defaults_then_client_then_mapping(client, alice, fake_vapi):
    alice.assistant.default_variables = {"companyName": "Acme", "customerName": "there", "topic": "general"}
    alice.assistant.save()

    response = post_call(
        client,
        {
            "assistantId": "sales-coach",
            "assistantOverrides": {
                "variableValues": {"topic": "pricing", "customerName": "Mallory"},
                "metadata": {"userId": "alice"},
            },
        },
    )

    log = assert_created(response, fake_vapi, user_id="alice", assistant_type="sales-coach", assistant=alice.assistant)
    assert fake_vapi.last_json["assistantOverrides"] == {
        "variableValues": {"companyName": "Acme", "customerName": "Alice A.", "topic": "pricing"},
        "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": log.pk},
    }


def test_without_any_variables_vapi_gets_only_metadata(client, db, fake_vapi):
    plain = Assistant.objects.create(name="Plain support", config={"firstMessage": "How can I help?"})
    AssistantType.objects.create(slug="support", default_assistant=plain)

    response = post_call(client, {"userId": "c1", "assistantType": "support"})

    log = assert_created(response, fake_vapi, user_id="c1", assistant_type="support", assistant=plain)
    assert fake_vapi.last_json == {
        "assistant": {"firstMessage": "How can I help?"},
        "assistantOverrides": {"metadata": {"userId": "c1", "assistantType": "support", "callLogId": log.pk}},
    }


@pytest.mark.parametrize("value", [True, False])
def test_room_delete_on_user_leave_passes_through(client, sales_coach, fake_vapi, value):
    response = post_call(
        client,
        {"assistant": {"userId": "c1", "assistantType": "sales-coach"}, "roomDeleteOnUserLeaveEnabled": value},
    )

    log = assert_created(
        response, fake_vapi, user_id="c1", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
    assert fake_vapi.last_json == {**default_upstream_body(sales_coach, log), "roomDeleteOnUserLeaveEnabled": value}


def test_a_mapping_wins_over_the_type_default_on_a_mapped_users_only_type(client, alice, sales_coach, fake_vapi):
    sales_coach.mapped_users_only = True
    sales_coach.save()

    response = post_call(client, {"userId": "alice", "assistantType": "sales-coach"})

    assert_created(response, fake_vapi, user_id="alice", assistant_type="sales-coach", assistant=alice.assistant)
    assert fake_vapi.last_json["assistantId"] == PERMANENT_ID


# --- refusals of the body ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model", "voice", "server", "firstMessage", "credentials"])
def test_it_refuses_a_client_override(client, sales_coach, fake_vapi, name):
    body = {"assistant": {"userId": "c1", "assistantType": "sales-coach"}, "assistantOverrides": {name: {}}}

    response = post_call(client, body)

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.BAD_REQUEST,
        "override_not_allowed",
        f"assistantOverrides.{name} {OVERRIDE_REFUSAL}",
    )


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"squad": {"members": [{"assistantId": PERMANENT_ID}]}}, "squad"),
        ({"squadId": PERMANENT_ID}, "squadId"),
        ({"workflow": {"nodes": []}}, "workflow"),
        ({"workflowId": PERMANENT_ID}, "workflowId"),
    ],
)
def test_it_refuses_a_squad_or_workflow(client, sales_coach, fake_vapi, extra, path):
    response = post_call(client, {"userId": "c1", "assistantType": "sales-coach", **extra})

    assert_refused(response, fake_vapi, HTTPStatus.BAD_REQUEST, "field_not_allowed", f"{path} {OVERRIDE_REFUSAL}")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {"assistant": {"userId": "c1", "assistantType": "sales-coach", "model": {"provider": "openai"}}},
            "assistant.model",
        ),
        (
            {"assistant": {"metadata": {"userId": "c1", "assistantType": "sales-coach", "role": "admin"}}},
            "assistant.metadata.role",
        ),
        (
            {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "c1", "callLogId": 1}}},
            "assistantOverrides.metadata.callLogId",
        ),
    ],
)
def test_it_refuses_an_unknown_key_inside_assistant_or_metadata(client, sales_coach, fake_vapi, body, path):
    response = post_call(client, body)

    assert_refused(response, fake_vapi, HTTPStatus.BAD_REQUEST, "field_not_allowed", f"{path} {OVERRIDE_REFUSAL}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "assistant": {"userId": "c1", "assistantType": "sales-coach"},
                "assistantOverrides": {"metadata": {"userId": "alice"}},
            },
            "userId is given twice with different values (assistant.userId and assistantOverrides.metadata.userId).",
        ),
        (
            {"assistantId": "sales-coach", "assistant": {"userId": "c1", "assistantType": "support"}},
            "assistantType is given twice with different values (assistant.assistantType and assistantId).",
        ),
        (
            {
                "userId": "c1",
                "assistantType": "sales-coach",
                "variableValues": {"topic": "pricing"},
                "assistantOverrides": {"variableValues": {"topic": "renewals"}},
            },
            "Variable 'topic' is given twice with different values "
            "(variableValues and assistantOverrides.variableValues).",
        ),
    ],
)
def test_it_refuses_the_same_field_twice_with_different_values(client, sales_coach, fake_vapi, body, message):
    response = post_call(client, body)

    assert_refused(response, fake_vapi, HTTPStatus.BAD_REQUEST, "conflicting_field", message)


def test_it_refuses_a_missing_user_id_when_the_body_must_say_who_calls(client, sales_coach, fake_vapi):
    response = post_call(client, {"assistant": {"assistantType": "sales-coach"}})

    assert_refused(
        response, fake_vapi, HTTPStatus.BAD_REQUEST, "missing_field", "userId is required.", assistant_type="sales-coach"
    )


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"assistant": {"userId": "c1"}}, "missing_field", "assistantType is required."),
        (
            {"assistant": {"userId": "", "assistantType": "sales-coach"}},
            "missing_field",
            "userId is required (assistant.userId is empty).",
        ),
        (
            {"assistant": {"userId": {"id": "c1"}, "assistantType": "sales-coach"}},
            "invalid_field",
            "assistant.userId must be a string.",
        ),
        (
            {"assistant": {"userId": "u" * 256, "assistantType": "sales-coach"}},
            "invalid_field",
            "assistant.userId is longer than 255 characters.",
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "roomDeleteOnUserLeaveEnabled": "yes"},
            "invalid_field",
            "roomDeleteOnUserLeaveEnabled must be true or false.",
        ),
    ],
)
def test_it_refuses_a_missing_or_malformed_field(client, sales_coach, fake_vapi, body, code, message):
    response = post_call(client, body)

    assert_refused(response, fake_vapi, HTTPStatus.BAD_REQUEST, code, message)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"seats": NaN}}',
            "NaN is not a JSON number",
        ),
        (
            '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"seats": -Infinity}}',
            "-Infinity is not a JSON number",
        ),
        (
            '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"seats": 1e400}}',
            "the number 1e400 is out of range",
        ),
        (
            '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"seats": ' + "9" * 5000 + "}}",
            "a number in it has too many digits",
        ),
        ("[" * 5000 + "]" * 5000, "it is nested too deeply"),
    ],
)
def test_it_refuses_json_python_reads_but_json_does_not_allow(client, sales_coach, fake_vapi, raw, reason):
    # A number variable would accept these values; Vapi's body cannot carry them.
    ClientVariable.objects.create(
        assistant=sales_coach.default_assistant, name="seats", value_type=ClientVariable.ValueType.NUMBER
    )

    response = post_call(client, raw)

    assert_refused(
        response, fake_vapi, HTTPStatus.BAD_REQUEST, "invalid_json", f"The request body is not valid JSON ({reason})."
    )


@pytest.mark.parametrize(
    "raw",
    [
        '{"userId": "c\\ud800", "assistantType": "sales-coach"}',
        '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "\\udfff"}}',
        '{"userId": "c1", "assistantType": "sales-coach", "variableValues": {"\\ud83d": "x"}}',
        '{"userId": "c1", "assistantType": "sales-coach", "\\ud800": 1}',
    ],
)
def test_it_refuses_a_string_that_is_half_a_surrogate_pair_as_not_json(client, sales_coach, fake_vapi, raw):
    # Found while fuzzing the API contract: nothing can encode "\ud800" (database, log, Vapi's body),
    # so these were 500s on SQLite and PostgreSQL alike.
    response = post_call(client, raw)

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.BAD_REQUEST,
        "invalid_json",
        "The request body is not valid JSON (it has a \\u escape that is half of a UTF-16 pair, not a character).",
    )


def test_a_whole_surrogate_pair_is_an_ordinary_character(client, sales_coach, fake_vapi):
    response = post_call(client, '{"userId": "c\\ud83d\\ude00", "assistantType": "sales-coach"}')

    assert response.status_code == HTTPStatus.CREATED
    assert CallLog.objects.get().user_id == "c\U0001f600"


@pytest.mark.parametrize(
    "body, where",
    [
        ({"userId": "c1\u0000", "assistantType": "sales-coach"}, "userId"),
        ({"assistant": {"userId": "c1", "assistantType": "sales\u0000coach"}}, "assistant.assistantType"),
        ({"userId": "c1\nINFO forged log line", "assistantType": "sales-coach"}, "userId"),
        ({"userId": "c1\u0085c2", "assistantType": "sales-coach"}, "userId"),
    ],
)
def test_it_refuses_an_identifier_with_control_characters(client, sales_coach, fake_vapi, body, where):
    # A NUL was a 500 on PostgreSQL (it stores none); a newline would forge lines in the server log.
    response = post_call(client, body)

    assert_refused(
        response, fake_vapi, HTTPStatus.BAD_REQUEST, "invalid_field", f"{where} must not contain control characters."
    )


def test_an_unknown_field_with_a_control_character_is_named_with_escapes(client, sales_coach, fake_vapi):
    response = post_call(client, {"userId": "c1", "assistantType": "sales-coach", "bad\u0000name": 1})

    assert_refused(
        response, fake_vapi, HTTPStatus.BAD_REQUEST, "field_not_allowed", f"'bad\\x00name' {OVERRIDE_REFUSAL}"
    )


# --- refusals of the resolution ----------------------------------------------------------------


def test_it_refuses_a_variable_not_on_the_allowed_list(client, sales_coach, fake_vapi):
    response = post_call(
        client, {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"companyName": "Evil Corp"}}
    )

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.BAD_REQUEST,
        "variable_not_allowed",
        "Variable 'companyName' may not be set by the client for 'sales-coach' (allowed: topic).",
        user_id="c1",
        assistant_type="sales-coach",
        # Staff see whose variable list refused it.
        assistant=sales_coach.default_assistant,
    )


@pytest.mark.parametrize("value", [7, "x" * 21, ["pricing"]])
def test_it_refuses_a_variable_of_the_wrong_type_or_too_long(client, sales_coach, fake_vapi, value):
    response = post_call(client, {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": value}})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.BAD_REQUEST,
        "invalid_variable",
        "Variable 'topic' must be text of at most 20 characters.",
        user_id="c1",
        assistant_type="sales-coach",
        assistant=sales_coach.default_assistant,
    )


def test_it_refuses_an_unknown_assistant_type(client, sales_coach, fake_vapi):
    response = post_call(client, {"userId": "c1", "assistantType": "nope"})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.NOT_FOUND,
        "unknown_assistant_type",
        "Assistant type 'nope' does not exist or is not active.",
        user_id="c1",
        assistant_type="nope",
    )


def test_it_refuses_an_inactive_assistant_type_even_for_a_mapped_user(client, alice, sales_coach, fake_vapi):
    sales_coach.is_active = False
    sales_coach.save()

    response = post_call(client, {"userId": "alice", "assistantType": "sales-coach"})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.NOT_FOUND,
        "unknown_assistant_type",
        "Assistant type 'sales-coach' does not exist or is not active.",
        user_id="alice",
        assistant_type="sales-coach",
    )


def test_it_refuses_an_unmapped_user_on_a_mapped_users_only_type(client, alice, sales_coach, fake_vapi):
    sales_coach.mapped_users_only = True
    sales_coach.save()

    response = post_call(client, {"userId": "bob", "assistantType": "sales-coach"})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "user_not_mapped",
        "User 'bob' has no assistant for 'sales-coach': ask staff to map this user "
        "(this type is for mapped users only).",
        user_id="bob",
        assistant_type="sales-coach",
    )


def test_it_refuses_an_unmapped_user_on_a_type_without_default(client, sales_coach, fake_vapi):
    sales_coach.default_assistant = None
    sales_coach.save()

    response = post_call(client, {"userId": "bob", "assistantType": "sales-coach"})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "user_not_mapped",
        "User 'bob' has no assistant for 'sales-coach': ask staff to map this user.",
        user_id="bob",
        assistant_type="sales-coach",
    )


def test_it_refuses_a_mapping_to_an_inactive_assistant(client, alice, fake_vapi):
    Assistant.objects.filter(pk=alice.assistant_id).update(is_active=False)

    response = post_call(client, {"userId": "alice", "assistantType": "sales-coach"})

    assert_refused(
        response,
        fake_vapi,
        HTTPStatus.FORBIDDEN,
        "assistant_inactive",
        "The assistant for 'sales-coach' is switched off.",
        user_id="alice",
        assistant_type="sales-coach",
        assistant=alice.assistant,
    )


def test_a_mapping_wins_over_an_inactive_default(client, alice, sales_coach, fake_vapi):
    Assistant.objects.filter(pk=sales_coach.default_assistant_id).update(is_active=False)

    response = post_call(client, {"userId": "alice", "assistantType": "sales-coach"})

    assert_created(response, fake_vapi, user_id="alice", assistant_type="sales-coach", assistant=alice.assistant)


def test_a_mapping_to_another_type_does_not_apply(client, alice, sales_coach, fake_vapi):
    support = AssistantType.objects.create(slug="support", mapped_users_only=True)
    UserMapping.objects.create(user_id="bob", assistant_type=support, assistant=alice.assistant)

    response = post_call(client, {"userId": "bob", "assistantType": "sales-coach"})

    assert_created(
        response, fake_vapi, user_id="bob", assistant_type="sales-coach", assistant=sales_coach.default_assistant
    )
