"""What one call start costs the database, as a whole request (issue 5: the hot path).

The benchmark's profile showed the database as the largest share of the proxy's CPU time per
call start; these counts keep a later change from adding round trips silently. Statements are
counted by kind: SAVEPOINT/RELEASE appear only because each test runs inside a transaction (in
production, autocommit makes a single INSERT or UPDATE its own transaction).
"""

import json
import re
import uuid

import httpx

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from assistants.models import Assistant, AssistantType, ClientVariable, UserMapping
from calls import vapi as vapi_module
from calls.models import CallLog
from tests.conftest import load_fixture


@pytest.fixture
def coach(db):
    assistant = Assistant.objects.create(
        name="Coach",
        kind=Assistant.Kind.TRANSIENT,
        config={"model": {"provider": "openai", "model": "gpt-4o-mini"}},
        default_variables={"companyName": "Acme"},
    )
    ClientVariable.objects.create(assistant=assistant, name="topic", value_type="string", max_length=50)
    kind = AssistantType.objects.create(slug="coach", default_assistant=assistant, mapped_users_only=False)
    UserMapping.objects.create(user_id="mapped-user", assistant_type=kind, assistant=assistant)
    return kind


@pytest.fixture
def new_call_each_time(fake_vapi):
    """Vapi answers every start with a call of its own id, as the real one does."""

    def answer(request):
        return httpx.Response(201, json={**load_fixture("vapi_call_web_201.json"), "id": str(uuid.uuid4())})

    fake_vapi._answer = answer
    return fake_vapi


def _statements(client, body: dict) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/call/web", json.dumps(body), content_type="application/json")
    kinds = [re.match(r"\s*(\w+)", query["sql"]).group(1).upper() for query in captured.captured_queries]
    return response.status_code, [kind for kind in kinds if kind not in ("SAVEPOINT", "RELEASE")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"userId": "someone", "assistantType": "coach"},
            # the type, its default assistant, the user's mapping and row (one join), pending row, settled row
            ["SELECT", "INSERT", "UPDATE"],
            id="unmapped",
        ),
        pytest.param(
            {"userId": "mapped-user", "assistantType": "coach"},
            ["SELECT", "INSERT", "UPDATE"],
            id="mapped",
        ),
        pytest.param(
            {"assistantId": "coach", "assistantOverrides": {"variableValues": {"topic": "renewals"},
                                                             "metadata": {"userId": "mapped-user"}}},
            # + the assistant's client variables, read only when the client sends some
            ["SELECT", "SELECT", "INSERT", "UPDATE"],
            id="mapped-with-variables",
        ),
    ],
)
def test_a_call_start_makes_a_fixed_number_of_queries(client, coach, fake_vapi, body, expected):
    status, statements = _statements(client, body)

    assert status == 201
    assert statements == expected
    assert CallLog.objects.get().outcome == CallLog.Outcome.CREATED


def test_a_refused_start_writes_one_row_and_reads_little(client, coach):
    status, statements = _statements(client, {"userId": "someone", "assistantType": "no-such-type"})

    assert status == 404
    # No type row to join the user's row to: whether the user is blocked is asked separately.
    assert statements == ["SELECT", "SELECT", "INSERT"]


def test_the_query_count_does_not_grow_with_the_call_log(client, coach, new_call_each_time):
    for number in range(5):
        client.post("/call/web", {"userId": f"user-{number}", "assistantType": "coach"}, content_type="application/json")

    status, statements = _statements(client, {"userId": "someone-else", "assistantType": "coach"})

    assert status == 201
    assert statements == ["SELECT", "INSERT", "UPDATE"]


def test_every_call_start_shares_one_vapi_client(client, coach, new_call_each_time, monkeypatch):
    built = []
    original = vapi_module.VapiClient.from_settings
    monkeypatch.setattr(vapi_module, "_client", None)
    monkeypatch.setattr(
        vapi_module.VapiClient, "from_settings", classmethod(lambda cls, **kw: built.append(1) or original(**kw))
    )

    for number in range(3):
        response = client.post(
            "/call/web", {"userId": f"user-{number}", "assistantType": "coach"}, content_type="application/json"
        )
        assert response.status_code == 201

    assert len(built) == 1
    assert len(new_call_each_time.requests) == 3
