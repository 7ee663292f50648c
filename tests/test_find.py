"""`assistants.resolution.find`: the one query behind every call start reads what the ORM would."""

import uuid
from decimal import Decimal

import pytest

from assistants.models import Assistant, AssistantType, EndUser, UserMapping
from assistants.resolution import find


def _fields(instance):
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


@pytest.fixture
def stored(db):
    permanent = Assistant.objects.create(
        name="Permanent", kind=Assistant.Kind.PERMANENT, vapi_assistant_id=uuid.UUID("6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f")
    )
    transient = Assistant.objects.create(
        name="Transient",
        kind=Assistant.Kind.TRANSIENT,
        config={"model": {"provider": "openai", "messages": [{"role": "system", "content": "Ünïcode ✓"}]}},
        default_variables={"companyName": "Acme", "seats": 3},
        max_duration_seconds=900,
    )
    kind = AssistantType.objects.create(slug="coach", default_assistant=transient, mapped_users_only=False)
    mapping = UserMapping.objects.create(
        user_id="ana", assistant_type=kind, assistant=permanent, variable_values={"customerName": "Ana"}
    )
    end_user = EndUser.objects.create(user_id="ana", is_blocked=True, daily_spend_limit=Decimal("12.5000"))
    return kind, mapping, end_user


def test_it_reads_the_type_mapping_and_user_as_the_orm_does(stored, django_assert_num_queries):
    kind, mapping, end_user = stored

    with django_assert_num_queries(1):
        found = find(user_id="ana", assistant_type="coach")
        # Related objects come with it: reading them costs no further query.
        assert found.mapping.assistant.name == "Permanent"
        assert found.mapping.assistant_type is found.assistant_type
        assert found.assistant_type.default_assistant.name == "Transient"

    assert _fields(found.assistant_type) == _fields(AssistantType.objects.get(pk=kind.pk))
    assert _fields(found.assistant_type.default_assistant) == _fields(Assistant.objects.get(name="Transient"))
    assert _fields(found.mapping) == _fields(UserMapping.objects.get(pk=mapping.pk))
    assert _fields(found.mapping.assistant) == _fields(Assistant.objects.get(name="Permanent"))
    assert _fields(found.end_user) == _fields(EndUser.objects.get(pk=end_user.pk))
    assert found.end_user.daily_spend_limit == Decimal("12.5")
    assert found.mapping.assistant.vapi_assistant_id == uuid.UUID("6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f")
    assert found.assistant_type.default_assistant.config["model"]["messages"][0]["content"] == "Ünïcode ✓"


def test_a_user_without_mapping_or_row_gets_the_type_alone(stored):
    found = find(user_id="bo", assistant_type="coach")

    assert (found.assistant_type.slug, found.mapping, found.end_user) == ("coach", None, None)
    assert found.assistant_type.default_assistant.name == "Transient"


def test_a_type_without_default_assistant_reads_as_none(db):
    AssistantType.objects.create(slug="closed", mapped_users_only=True)

    found = find(user_id="bo", assistant_type="closed")

    assert found.assistant_type.default_assistant is None


def test_an_unknown_type_still_finds_the_users_row(stored):
    found = find(user_id="ana", assistant_type="no-such-type")

    assert (found.assistant_type, found.mapping, found.end_user.user_id) == (None, None, "ana")


def test_another_users_mapping_is_not_found(stored):
    assert find(user_id="ANA", assistant_type="coach").mapping is None
