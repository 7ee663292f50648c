import pytest
from django.core.exceptions import ValidationError

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from tests.conftest import PERMANENT_ID

pytestmark = pytest.mark.django_db

CONFIG = {"firstMessage": "Hi {{customerName}}!", "model": {"provider": "openai", "model": "gpt-4o-mini"}}


def errors_of(instance) -> dict:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def permanent(**fields) -> Assistant:
    return Assistant(
        **{"name": "Premium coach", "kind": Assistant.Kind.PERMANENT, "vapi_assistant_id": PERMANENT_ID, **fields}
    )


def transient(**fields) -> Assistant:
    return Assistant(**{"name": "Sales coach", "kind": Assistant.Kind.TRANSIENT, "config": CONFIG, **fields})


def test_a_permanent_assistant_with_a_uuid_is_valid():
    assistant = permanent()

    assistant.full_clean()

    assert str(assistant.vapi_assistant_id) == PERMANENT_ID


def test_a_permanent_assistant_needs_its_vapi_id():
    assert errors_of(permanent(vapi_assistant_id=None)) == {
        "vapi_assistant_id": ["A permanent assistant needs its Vapi assistant id."]
    }


def test_a_permanent_assistant_refuses_an_id_that_is_not_a_uuid():
    assert errors_of(permanent(vapi_assistant_id="sales-coach")) == {
        "vapi_assistant_id": [
            "Enter the assistant's id from the Vapi dashboard, e.g. 6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f."
        ]
    }


def test_a_permanent_assistant_has_no_config():
    assert errors_of(permanent(config=CONFIG)) == {
        "config": ["A permanent assistant has no config; clear this field."]
    }


def test_a_transient_assistant_with_an_object_config_is_valid():
    transient().full_clean()


@pytest.mark.parametrize("config", [None, {}, [CONFIG], "You are a sales coach.", 42])
def test_a_transient_assistant_needs_a_non_empty_object_config(config):
    assert errors_of(transient(config=config)) == {
        "config": ['A transient assistant needs its config as a JSON object, e.g. {"firstMessage": "Hi"}.']
    }


def test_a_transient_assistant_has_no_vapi_id():
    assert errors_of(transient(vapi_assistant_id=PERMANENT_ID)) == {
        "vapi_assistant_id": ["A transient assistant has no Vapi id; clear this field."]
    }


def test_an_unknown_kind_is_refused_without_guessing_which_fields_it_needs():
    assert errors_of(transient(kind="squad")) == {"kind": ["Value 'squad' is not a valid choice."]}


def test_default_variables_accept_text_numbers_and_booleans():
    assistant = transient(default_variables={"companyName": "Acme", "seats": 12, "discount": 0.5, "vip": False})

    assistant.full_clean()


def test_empty_default_variables_mean_none():
    assistant = transient(default_variables=None)

    assistant.full_clean()

    assert assistant.default_variables == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["companyName"], 'Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.'),
        ("Acme", 'Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.'),
        (
            {"company name": "Acme"},
            "'company name' is not a valid variable name: use letters, digits and _ only, not starting with a digit.",
        ),
        (
            {"1st": "Acme"},
            "'1st' is not a valid variable name: use letters, digits and _ only, not starting with a digit.",
        ),
        (
            {"topic\n": "Acme"},
            "'topic\\n' is not a valid variable name: use letters, digits and _ only, not starting with a digit.",
        ),
        (
            {"companyName": None},
            "The value of 'companyName' must be text, a number or true/false (not a list, object or null).",
        ),
        (
            {"companyName": {"name": "Acme"}},
            "The value of 'companyName' must be text, a number or true/false (not a list, object or null).",
        ),
        (
            {"companyName": ["Acme"]},
            "The value of 'companyName' must be text, a number or true/false (not a list, object or null).",
        ),
    ],
)
def test_default_variables_must_map_variable_names_to_simple_values(value, message):
    assert errors_of(transient(default_variables=value)) == {"default_variables": [message]}


@pytest.fixture
def coach_type():
    assistant = transient()
    assistant.save()
    return AssistantType.objects.create(slug="sales-coach", default_assistant=assistant)


def test_a_mapping_with_variable_values_is_valid(coach_type):
    mapping = UserMapping(
        user_id="alice",
        assistant_type=coach_type,
        assistant=coach_type.default_assistant,
        variable_values={"customerName": "Alice A.", "seats": 3, "vip": True},
    )

    mapping.full_clean()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], 'Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.'),
        (
            {"customer-name": "Alice"},
            "'customer-name' is not a valid variable name: use letters, digits and _ only, not starting with a digit.",
        ),
        (
            {"customerName": ["Alice"]},
            "The value of 'customerName' must be text, a number or true/false (not a list, object or null).",
        ),
    ],
)
def test_a_mappings_variable_values_must_map_variable_names_to_simple_values(coach_type, value, message):
    mapping = UserMapping(
        user_id="alice", assistant_type=coach_type, assistant=coach_type.default_assistant, variable_values=value
    )

    assert errors_of(mapping) == {"variable_values": [message]}


def test_a_user_has_one_mapping_per_assistant_type(coach_type):
    UserMapping.objects.create(user_id="alice", assistant_type=coach_type, assistant=coach_type.default_assistant)
    second = UserMapping(user_id="alice", assistant_type=coach_type, assistant=coach_type.default_assistant)

    assert errors_of(second) == {
        "__all__": ["This user already has a mapping for this assistant type; edit that one."]
    }


def test_a_user_may_have_mappings_for_different_types(coach_type):
    other_type = AssistantType.objects.create(slug="support", default_assistant=coach_type.default_assistant)
    UserMapping.objects.create(user_id="alice", assistant_type=coach_type, assistant=coach_type.default_assistant)

    UserMapping(user_id="alice", assistant_type=other_type, assistant=coach_type.default_assistant).full_clean()


@pytest.mark.parametrize("name", ["topic", "customer_name", "_internal", "Topic2"])
def test_a_client_variable_name_is_an_identifier(coach_type, name):
    ClientVariable(assistant=coach_type.default_assistant, name=name).full_clean()


@pytest.mark.parametrize("name", ["2topic", "customer name", "customer-name", "{{topic}}", "topic\n"])
def test_a_client_variable_name_that_is_not_an_identifier_is_refused(coach_type, name):
    variable = ClientVariable(assistant=coach_type.default_assistant, name=name)

    assert errors_of(variable) == {
        "name": ["Not a valid variable name: use letters, digits and _ only, not starting with a digit."]
    }


def test_an_empty_client_variable_name_gets_one_message(coach_type):
    assert errors_of(ClientVariable(assistant=coach_type.default_assistant, name="")) == {
        "name": ["This field cannot be blank."]
    }


def test_an_assistant_cannot_have_two_client_variables_of_one_name(coach_type):
    ClientVariable.objects.create(assistant=coach_type.default_assistant, name="topic")

    assert errors_of(ClientVariable(assistant=coach_type.default_assistant, name="topic")) == {
        "__all__": ["This assistant already has a variable with this name."]
    }


def test_a_permanent_assistant_targets_its_vapi_id():
    assert permanent().vapi_target() == {"assistantId": PERMANENT_ID}


def test_a_transient_assistant_targets_its_config():
    assert transient().vapi_target() == {"assistant": CONFIG}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("a" * 20, True), ("", True), ("a" * 21, False), (5, False), (True, False), (None, False), (["a"], False)],
)
def test_a_text_variable_accepts_text_up_to_its_max_length(value, accepted):
    assert ClientVariable(name="topic", value_type="string", max_length=20).accepts(value) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(3, True), (0, True), (-2.5, True), (True, False), (False, False), ("3", False), (None, False)],
)
def test_a_number_variable_accepts_numbers_but_not_booleans(value, accepted):
    assert ClientVariable(name="seats", value_type="number").accepts(value) is accepted


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(True, True), (False, True), (1, False), (0, False), ("true", False), (None, False)],
)
def test_a_boolean_variable_accepts_only_true_or_false(value, accepted):
    assert ClientVariable(name="vip", value_type="boolean").accepts(value) is accepted
