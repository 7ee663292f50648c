"""`normalize_call_body` and `resolve_assistant` called directly, without HTTP."""

import uuid

import pytest

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from assistants.resolution import Resolution, resolve_assistant
from calls.bodies import CallRequest, normalize_call_body
from calls.errors import ProxyError
from tests.conftest import PERMANENT_ID

OVERRIDE_REFUSAL = (
    "is not accepted: the proxy sets what the assistant is and does; "
    "send only userId, assistantType and allowed variableValues."
)


def refusal(body: dict) -> tuple[int, str, str]:
    with pytest.raises(ProxyError) as caught:
        normalize_call_body(body)
    return caught.value.status, caught.value.code, caught.value.message


def resolution_refusal(**kwargs) -> tuple[int, str, str]:
    with pytest.raises(ProxyError) as caught:
        resolve_assistant(**kwargs)
    return caught.value.status, caught.value.code, caught.value.message


# --- normalize_call_body: every accepted shape -------------------------------------------------


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
def test_every_shape_without_variables_reads_as_the_same_request(body):
    assert normalize_call_body(body) == CallRequest(user_id="c1", assistant_type="sales-coach", variables={})


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
            id="assistant-and-overrides",
        ),
        pytest.param(
            {"assistant": {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "pricing"}}},
            id="assistant-variables",
        ),
        pytest.param(
            {
                "assistant": {"metadata": {"userId": "c1", "assistantType": "sales-coach"}},
                "assistantOverrides": {"variableValues": {"topic": "pricing"}},
            },
            id="assistant-metadata-and-overrides",
        ),
    ],
)
def test_every_shape_with_variables_reads_as_the_same_request(body):
    assert normalize_call_body(body) == CallRequest(
        user_id="c1", assistant_type="sales-coach", variables={"topic": "pricing"}
    )


def test_it_reads_an_integer_user_id_as_text():
    request = normalize_call_body({"assistant": {"userId": 42, "assistantType": "sales-coach"}})

    assert request.user_id == "42"


def test_it_trims_spaces_around_user_id_and_assistant_type():
    request = normalize_call_body({"userId": "  c1 ", "assistantType": " sales-coach\t"})

    assert (request.user_id, request.assistant_type) == ("c1", "sales-coach")


def test_the_same_field_twice_with_the_same_value_is_accepted():
    request = normalize_call_body(
        {
            "userId": "c1",
            "assistant": {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "a"}},
            "assistantId": "sales-coach",
            "assistantOverrides": {
                "variableValues": {"topic": "a", "name": "Ana"},
                "metadata": {"userId": "c1", "assistantType": "sales-coach"},
            },
        }
    )

    assert request == CallRequest(user_id="c1", assistant_type="sales-coach", variables={"topic": "a", "name": "Ana"})


@pytest.mark.parametrize("value", [True, False])
def test_it_reads_room_delete_on_user_leave(value):
    body = {"userId": "c1", "assistantType": "sales-coach", "roomDeleteOnUserLeaveEnabled": value}

    request = normalize_call_body(body)

    assert request.room_delete_on_user_leave is value


def test_room_delete_on_user_leave_is_unset_when_absent():
    assert normalize_call_body({"userId": "c1", "assistantType": "sales-coach"}).room_delete_on_user_leave is None


# --- normalize_call_body: refusals -------------------------------------------------------------


@pytest.mark.parametrize("name", ["model", "voice", "server", "firstMessage", "credentials", "maxDurationSeconds"])
def test_it_refuses_a_client_override(name):
    body = {"assistant": {"userId": "c1", "assistantType": "sales-coach"}, "assistantOverrides": {name: {}}}

    assert refusal(body) == (400, "override_not_allowed", f"assistantOverrides.{name} {OVERRIDE_REFUSAL}")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"squad": {"members": []}}, "squad"),
        ({"squadId": "3c8e0c4a-0d7b-4f7e-9c51-2a1f2b3c4d5e"}, "squadId"),
        ({"workflow": {"nodes": []}}, "workflow"),
        ({"workflowId": "3c8e0c4a-0d7b-4f7e-9c51-2a1f2b3c4d5e"}, "workflowId"),
        ({"workflowOverrides": {}}, "workflowOverrides"),
        ({"assistantVersion": 3}, "assistantVersion"),
        ({"assistant": {"userId": "c1", "assistantType": "sales-coach", "model": {}}}, "assistant.model"),
        ({"assistant": {"firstMessage": "Hi"}}, "assistant.firstMessage"),
        ({"assistant": {"metadata": {"role": "admin"}}}, "assistant.metadata.role"),
        (
            {"assistantId": "sales-coach", "assistantOverrides": {"metadata": {"userId": "c1", "callLogId": 7}}},
            "assistantOverrides.metadata.callLogId",
        ),
    ],
)
def test_it_refuses_a_field_the_client_may_not_set(body, path):
    body = {"userId": "c1", "assistantType": "sales-coach", **body}

    assert refusal(body) == (400, "field_not_allowed", f"{path} {OVERRIDE_REFUSAL}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "assistant": {"userId": "c1", "assistantType": "sales-coach"},
                "assistantOverrides": {"metadata": {"userId": "mallory"}},
            },
            "userId is given twice with different values (assistant.userId and assistantOverrides.metadata.userId).",
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "assistant": {"metadata": {"userId": "mallory"}}},
            "userId is given twice with different values (userId and assistant.metadata.userId).",
        ),
        (
            {"assistantId": "sales-coach", "assistant": {"userId": "c1", "assistantType": "support"}},
            "assistantType is given twice with different values (assistant.assistantType and assistantId).",
        ),
        (
            {
                "assistant": {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"topic": "a"}},
                "assistantOverrides": {"variableValues": {"topic": "b"}},
            },
            "Variable 'topic' is given twice with different values "
            "(assistant.variableValues and assistantOverrides.variableValues).",
        ),
        (
            {
                "userId": "c1",
                "assistantType": "sales-coach",
                "variableValues": {"vip": 1},
                "assistantOverrides": {"variableValues": {"vip": True}},
            },
            "Variable 'vip' is given twice with different values "
            "(variableValues and assistantOverrides.variableValues).",
        ),
        (
            {"userId": 1, "assistant": {"userId": True, "assistantType": "sales-coach"}},
            "userId is given twice with different values (userId and assistant.userId).",
        ),
    ],
)
def test_it_refuses_the_same_field_twice_with_different_values(body, message):
    assert refusal(body) == (400, "conflicting_field", message)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"assistant": {"userId": "c1"}}, (400, "missing_field", "assistantType is required.")),
        ({}, (400, "missing_field", "assistantType is required.")),
        (
            {"assistant": {"userId": "", "assistantType": "sales-coach"}},
            (400, "missing_field", "userId is required (assistant.userId is empty)."),
        ),
        (
            {"userId": "   ", "assistantType": "sales-coach"},
            (400, "missing_field", "userId is required (userId is empty)."),
        ),
        (
            {"assistantId": "", "assistantOverrides": {"metadata": {"userId": "c1"}}},
            (400, "missing_field", "assistantType is required (assistantId is empty)."),
        ),
        (
            {"assistant": {"userId": {"id": "c1"}, "assistantType": "sales-coach"}},
            (400, "invalid_field", "assistant.userId must be a string."),
        ),
        ({"userId": True, "assistantType": "sales-coach"}, (400, "invalid_field", "userId must be a string.")),
        ({"userId": None, "assistantType": "sales-coach"}, (400, "invalid_field", "userId must be a string.")),
        ({"userId": 4.5, "assistantType": "sales-coach"}, (400, "invalid_field", "userId must be a string.")),
        (
            {"userId": "c1", "assistantType": ["sales-coach"]},
            (400, "invalid_field", "assistantType must be a string."),
        ),
        (
            {"userId": "u" * 256, "assistantType": "sales-coach"},
            (400, "invalid_field", "userId is longer than 255 characters."),
        ),
        (
            {"userId": "c1", "assistant": {"assistantType": "t" * 101}},
            (400, "invalid_field", "assistant.assistantType is longer than 100 characters."),
        ),
        ({"assistant": "sales-coach"}, (400, "invalid_field", "assistant must be a JSON object.")),
        (
            {"assistantId": "sales-coach", "assistantOverrides": ["metadata"]},
            (400, "invalid_field", "assistantOverrides must be a JSON object."),
        ),
        (
            {"assistant": {"metadata": "c1"}},
            (400, "invalid_field", "assistant.metadata must be a JSON object."),
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "variableValues": ["topic"]},
            (400, "invalid_field", "variableValues must be an object of variable names to values."),
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "roomDeleteOnUserLeaveEnabled": "false"},
            (400, "invalid_field", "roomDeleteOnUserLeaveEnabled must be true or false."),
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"": "x"}},
            (400, "invalid_variable", "Variable name '' is not valid."),
        ),
        (
            {"userId": "c1", "assistantType": "sales-coach", "variableValues": {"v" * 101: "x"}},
            (400, "invalid_variable", f"Variable name {'v' * 100!r} is not valid."),
        ),
    ],
)
def test_it_refuses_a_missing_or_malformed_field(body, expected):
    assert refusal(body) == expected


def test_a_body_without_user_id_leaves_the_user_to_the_token_or_session():
    assert normalize_call_body({"assistantType": "sales-coach"}).user_id is None


def test_user_id_of_exactly_the_maximum_length_is_accepted():
    assert normalize_call_body({"userId": "u" * 255, "assistantType": "sales-coach"}).user_id == "u" * 255


# --- resolve_assistant -------------------------------------------------------------------------


@pytest.fixture
def support(db):
    """A second type whose default assistant lets clients set nothing and has no defaults."""
    plain = Assistant.objects.create(name="Plain support", config={"firstMessage": "How can I help?"})
    return AssistantType.objects.create(slug="support", default_assistant=plain)


def test_an_unmapped_user_gets_the_type_default(sales_coach):
    resolution = resolve_assistant(user_id="bob", assistant_type="sales-coach", client_variables={"topic": "pricing"})

    assert resolution == Resolution(
        user_id="bob",
        assistant_type=sales_coach,
        assistant=sales_coach.default_assistant,
        mapping=None,
        variables={"companyName": "Acme", "customerName": "there", "topic": "pricing"},
    )


def test_a_mapped_user_gets_the_mapping_even_when_the_type_has_a_default(alice, sales_coach):
    resolution = resolve_assistant(user_id="alice", assistant_type="sales-coach", client_variables={})

    assert resolution == Resolution(
        user_id="alice",
        assistant_type=sales_coach,
        assistant=alice.assistant,
        mapping=alice,
        variables={"companyName": "Acme", "customerName": "Alice A."},
    )


def test_a_mapping_is_per_type(alice, support):
    resolution = resolve_assistant(user_id="alice", assistant_type="support", client_variables={})

    assert (resolution.assistant, resolution.mapping) == (support.default_assistant, None)


def test_variables_merge_defaults_then_client_then_mapping(alice):
    alice.assistant.default_variables = {"companyName": "Acme", "customerName": "there", "topic": "general"}
    alice.assistant.save()

    resolution = resolve_assistant(
        user_id="alice",
        assistant_type="sales-coach",
        client_variables={"topic": "pricing", "customerName": "Mallory"},
    )

    assert resolution.variables == {"companyName": "Acme", "customerName": "Alice A.", "topic": "pricing"}


def test_vapi_body_for_a_permanent_assistant_names_the_stored_id(alice):
    resolution = resolve_assistant(user_id="alice", assistant_type="sales-coach", client_variables={"topic": "pricing"})

    assert resolution.vapi_body(call_log_id=17) == {
        "assistantId": PERMANENT_ID,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "Alice A.", "topic": "pricing"},
            "metadata": {"userId": "alice", "assistantType": "sales-coach", "callLogId": 17},
        },
    }


def test_vapi_body_for_a_transient_assistant_carries_the_stored_config(sales_coach):
    resolution = resolve_assistant(user_id="bob", assistant_type="sales-coach", client_variables={})

    assert resolution.vapi_body(call_log_id=None) == {
        "assistant": sales_coach.default_assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there"},
            "metadata": {"userId": "bob", "assistantType": "sales-coach"},
        },
    }


def test_vapi_body_has_no_variable_values_when_there_are_none(support):
    resolution = resolve_assistant(user_id="bob", assistant_type="support", client_variables={})

    assert resolution.vapi_body(call_log_id=3) == {
        "assistant": {"firstMessage": "How can I help?"},
        "assistantOverrides": {"metadata": {"userId": "bob", "assistantType": "support", "callLogId": 3}},
    }


def test_it_refuses_an_unknown_type(sales_coach):
    assert resolution_refusal(user_id="bob", assistant_type="nope", client_variables={}) == (
        404,
        "unknown_assistant_type",
        "Assistant type 'nope' does not exist or is not active.",
    )


def test_it_refuses_an_inactive_type_even_for_a_mapped_user(alice, sales_coach):
    sales_coach.is_active = False
    sales_coach.save()

    assert resolution_refusal(user_id="alice", assistant_type="sales-coach", client_variables={}) == (
        404,
        "unknown_assistant_type",
        "Assistant type 'sales-coach' does not exist or is not active.",
    )


def test_type_slugs_are_case_sensitive(sales_coach):
    assert resolution_refusal(user_id="bob", assistant_type="Sales-Coach", client_variables={})[1] == (
        "unknown_assistant_type"
    )


def test_it_refuses_an_unmapped_user_on_a_mapped_users_only_type(alice, sales_coach):
    sales_coach.mapped_users_only = True
    sales_coach.save()

    assert resolution_refusal(user_id="bob", assistant_type="sales-coach", client_variables={}) == (
        403,
        "user_not_mapped",
        "User 'bob' has no assistant for 'sales-coach': ask staff to map this user "
        "(this type is for mapped users only).",
    )
    assert resolve_assistant(user_id="alice", assistant_type="sales-coach", client_variables={}).mapping == alice


def test_it_refuses_an_unmapped_user_on_a_type_without_default(sales_coach):
    sales_coach.default_assistant = None
    sales_coach.save()

    assert resolution_refusal(user_id="bob", assistant_type="sales-coach", client_variables={}) == (
        403,
        "user_not_mapped",
        "User 'bob' has no assistant for 'sales-coach': ask staff to map this user.",
    )


def test_it_refuses_a_mapping_to_an_inactive_assistant(alice):
    Assistant.objects.filter(pk=alice.assistant_id).update(is_active=False)

    assert resolution_refusal(user_id="alice", assistant_type="sales-coach", client_variables={}) == (
        403,
        "assistant_inactive",
        "The assistant for 'sales-coach' is switched off.",
    )


def test_it_refuses_an_inactive_default_assistant(sales_coach):
    Assistant.objects.filter(pk=sales_coach.default_assistant_id).update(is_active=False)

    assert resolution_refusal(user_id="bob", assistant_type="sales-coach", client_variables={}) == (
        403,
        "assistant_inactive",
        "The assistant for 'sales-coach' is switched off.",
    )


def test_it_refuses_a_variable_not_on_the_allowed_list(sales_coach):
    assert resolution_refusal(
        user_id="bob", assistant_type="sales-coach", client_variables={"topic": "pricing", "companyName": "Evil"}
    ) == (
        400,
        "variable_not_allowed",
        "Variable 'companyName' may not be set by the client for 'sales-coach' (allowed: topic).",
    )


def test_the_allowed_list_is_the_mapped_assistants(alice):
    # customerName is allowed on Alice's assistant but not on the type's default.
    assert resolve_assistant(
        user_id="alice", assistant_type="sales-coach", client_variables={"customerName": "Ann"}
    ).assistant == alice.assistant
    assert resolution_refusal(user_id="bob", assistant_type="sales-coach", client_variables={"customerName": "Ann"})[
        1
    ] == "variable_not_allowed"


def test_it_refuses_every_variable_when_the_assistant_allows_none(support):
    assert resolution_refusal(user_id="bob", assistant_type="support", client_variables={"topic": "x"}) == (
        400,
        "variable_not_allowed",
        "Variable 'topic' may not be set by the client for 'support' (allowed: none).",
    )


@pytest.fixture
def typed_variables(sales_coach):
    assistant = sales_coach.default_assistant
    ClientVariable.objects.create(assistant=assistant, name="seats", value_type=ClientVariable.ValueType.NUMBER)
    ClientVariable.objects.create(assistant=assistant, name="vip", value_type=ClientVariable.ValueType.BOOLEAN)
    return sales_coach


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"topic": "x" * 21}, "Variable 'topic' must be text of at most 20 characters."),
        ({"topic": 5}, "Variable 'topic' must be text of at most 20 characters."),
        ({"topic": {"text": "pricing"}}, "Variable 'topic' must be text of at most 20 characters."),
        ({"seats": "5"}, "Variable 'seats' must be a number."),
        ({"seats": True}, "Variable 'seats' must be a number."),
        ({"vip": 1}, "Variable 'vip' must be true or false."),
        ({"vip": "true"}, "Variable 'vip' must be true or false."),
    ],
)
def test_it_refuses_a_variable_of_the_wrong_type_or_length(typed_variables, variables, message):
    assert resolution_refusal(user_id="bob", assistant_type="sales-coach", client_variables=variables) == (
        400,
        "invalid_variable",
        message,
    )


def test_it_accepts_variables_of_each_type_at_their_limits(typed_variables):
    variables = {"topic": "x" * 20, "seats": 2.5, "vip": False}

    resolution = resolve_assistant(user_id="bob", assistant_type="sales-coach", client_variables=variables)

    assert resolution.variables == {"companyName": "Acme", "customerName": "there", **variables}


# --- query counts: a later change must not add queries silently --------------------------------


@pytest.mark.parametrize(
    ("user_id", "client_variables", "queries"),
    [
        pytest.param("alice", {}, 1, id="mapped"),
        pytest.param("alice", {"topic": "pricing"}, 2, id="mapped-with-variables"),
        pytest.param("bob", {}, 1, id="unmapped"),
        pytest.param("bob", {"topic": "pricing"}, 2, id="unmapped-with-variables"),
    ],
)
def test_resolution_query_count(alice, django_assert_num_queries, user_id, client_variables, queries):
    with django_assert_num_queries(queries):
        resolution = resolve_assistant(user_id=user_id, assistant_type="sales-coach", client_variables=client_variables)
        resolution.vapi_body(call_log_id=1)


def test_it_finds_a_mapping_by_the_user_id_as_text(sales_coach):
    numeric = UserMapping.objects.create(
        user_id="42", assistant_type=sales_coach, assistant=sales_coach.default_assistant
    )
    request = normalize_call_body({"userId": 42, "assistantType": "sales-coach"})

    resolution = resolve_assistant(
        user_id=request.user_id, assistant_type=request.assistant_type, client_variables=request.variables
    )

    assert resolution.mapping == numeric


def test_permanent_assistant_id_is_sent_as_its_canonical_text(sales_coach):
    upper = Assistant.objects.create(
        name="Upper", kind=Assistant.Kind.PERMANENT, vapi_assistant_id=uuid.UUID(PERMANENT_ID.upper())
    )
    AssistantType.objects.create(slug="upper", default_assistant=upper)

    resolution = resolve_assistant(user_id="bob", assistant_type="upper", client_variables={})

    assert resolution.vapi_body(call_log_id=1)["assistantId"] == PERMANENT_ID
