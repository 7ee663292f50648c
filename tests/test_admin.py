import json
from datetime import datetime, timezone
from http import HTTPStatus

import pytest
from django.forms.models import model_to_dict
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from assistants.models import Assistant, AssistantType, UserMapping
from calls.models import CallLog
from tests.conftest import PERMANENT_ID, TEST_VAPI_KEY, post_call

NEW_VAPI_ID = "0b6e3f4a-9c2d-4e1f-8a7b-5c6d7e8f9a0b"
CALL_ID = "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """admin_client's user gets a password; the default hasher spends half a second on each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def call_logs(alice):
    """Three call-log rows from different users, assistants, outcomes and days."""
    sales_coach = alice.assistant_type.default_assistant
    premium = alice.assistant

    def row(request_id, created_at, **fields):
        return CallLog.objects.create(request_id=request_id, created_at=created_at, route="web", **fields)

    return {
        "created": row(
            "req-created",
            datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc),
            user_id="alice",
            assistant_type="sales-coach",
            assistant=premium,
            outcome=CallLog.Outcome.CREATED,
            status_code=201,
            upstream_status=201,
            vapi_call_id=CALL_ID,
            latency_ms=180,
        ),
        "rejected": row(
            "req-rejected",
            datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc),
            user_id="bob",
            assistant_type="sales-coach",
            assistant=sales_coach,
            outcome=CallLog.Outcome.REJECTED,
            status_code=400,
            error_code="variable_not_allowed",
            error_detail="Variable 'model' may not be set by the client for 'sales-coach' (allowed: topic).",
        ),
        "failed": row(
            "req-failed",
            datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc),
            user_id="carol",
            assistant_type="sales-coach",
            assistant=sales_coach,
            outcome=CallLog.Outcome.FAILED,
            status_code=504,
            error_code="upstream_timeout",
            error_detail="Vapi did not answer in time; the call may not have started.",
        ),
    }


def listed(response) -> list[str]:
    """The request ids of the call-log rows a changelist shows, newest first."""
    assert response.status_code == HTTPStatus.OK
    return [log.request_id for log in response.context["cl"].result_list]


def admin_pages(alice, call_logs) -> dict[str, str]:
    premium = alice.assistant
    transient = alice.assistant_type.default_assistant
    return {
        "assistant list": "/admin/assistants/assistant/",
        "assistant add": "/admin/assistants/assistant/add/",
        "permanent assistant change": f"/admin/assistants/assistant/{premium.pk}/change/",
        "transient assistant change": f"/admin/assistants/assistant/{transient.pk}/change/",
        "assistant type list": "/admin/assistants/assistanttype/",
        "assistant type add": "/admin/assistants/assistanttype/add/",
        "assistant type change": f"/admin/assistants/assistanttype/{alice.assistant_type.pk}/change/",
        "mapping list": "/admin/assistants/usermapping/",
        "mapping add": "/admin/assistants/usermapping/add/",
        "mapping change": f"/admin/assistants/usermapping/{alice.pk}/change/",
        "call log list": "/admin/calls/calllog/",
        "call log entry": f"/admin/calls/calllog/{call_logs['created'].pk}/change/",
        "admin index": "/admin/",
    }


@pytest.mark.parametrize(
    "page",
    [
        "assistant list",
        "assistant add",
        "permanent assistant change",
        "transient assistant change",
        "assistant type list",
        "assistant type add",
        "assistant type change",
        "mapping list",
        "mapping add",
        "mapping change",
        "call log list",
        "call log entry",
        "admin index",
    ],
)
def test_admin_pages_render_without_the_vapi_key(admin_client, alice, call_logs, settings, page):
    assert settings.VAPI_API_KEY == TEST_VAPI_KEY

    response = admin_client.get(admin_pages(alice, call_logs)[page])

    assert response.status_code == HTTPStatus.OK
    assertNotContains(response, TEST_VAPI_KEY)


def test_admin_pages_need_a_staff_login(client, alice):
    response = client.get("/admin/assistants/assistant/")

    assertRedirects(response, "/admin/login/?next=/admin/assistants/assistant/")


# --- Assistants --------------------------------------------------------------------------------


def assistant_form(**fields) -> dict:
    """What the assistant add form posts, with no client variables unless given."""
    return {
        "name": "New coach",
        "kind": "transient",
        "is_active": "on",
        "vapi_assistant_id": "",
        "config": "",
        "default_variables": "",
        "max_duration_seconds": "600",
        "notes": "",
        "client_variables-TOTAL_FORMS": "0",
        "client_variables-INITIAL_FORMS": "0",
        "client_variables-MIN_NUM_FORMS": "0",
        "client_variables-MAX_NUM_FORMS": "1000",
        **fields,
    }


def field_errors(response) -> dict:
    assert response.status_code == HTTPStatus.OK
    return response.context["adminform"].form.errors.get_json_data(escape_html=False)


def messages_of(errors: dict) -> dict:
    return {field: [error["message"] for error in items] for field, items in errors.items()}


def test_a_transient_assistant_with_invalid_json_shows_one_message_at_the_config_field(admin_client, db):
    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config='{"firstMessage": "Hi",}'))

    assert messages_of(field_errors(response)) == {
        "config": [
            "This is not valid JSON: line 1, column 23: a name is not in double quotes, "
            "or there is a comma after the last item."
        ]
    }
    assertContains(
        response,
        '<ul class="errorlist" id="id_config_error"><li>This is not valid JSON: line 1, column 23: a name is not '
        "in double quotes, or there is a comma after the last item.</li></ul>",
        html=True,
    )
    assert response.context["adminform"].form["config"].value() == '{"firstMessage": "Hi",}'
    assert not Assistant.objects.exists()


@pytest.mark.parametrize("config", ["[]", '["firstMessage", "Hi"]', '"You are a sales coach."', "{}", ""])
def test_a_transient_assistant_whose_config_is_not_an_object_is_not_saved(admin_client, db, config):
    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config=config))

    assert messages_of(field_errors(response)) == {
        "config": ['A transient assistant needs its config as a JSON object, e.g. {"firstMessage": "Hi"}.']
    }
    assertContains(response, '<ul class="errorlist" id="id_config_error">')
    assert not Assistant.objects.exists()


def test_a_permanent_assistant_with_a_bad_vapi_id_shows_one_message_at_the_id_field(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/assistant/add/", assistant_form(kind="permanent", vapi_assistant_id="sales-coach")
    )

    assert messages_of(field_errors(response)) == {
        "vapi_assistant_id": [
            "Enter the assistant's id from the Vapi dashboard, e.g. 6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f."
        ]
    }
    assertContains(
        response,
        '<ul class="errorlist" id="id_vapi_assistant_id_error"><li>Enter the assistant&#x27;s id from the Vapi '
        "dashboard, e.g. 6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f.</li></ul>",
        html=True,
    )
    assert not Assistant.objects.exists()


def test_a_permanent_assistant_without_a_vapi_id_is_not_saved(admin_client, db):
    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(kind="permanent"))

    assert messages_of(field_errors(response)) == {
        "vapi_assistant_id": ["A permanent assistant needs its Vapi assistant id."]
    }
    assert not Assistant.objects.exists()


def test_a_valid_permanent_assistant_is_saved_with_its_client_variables(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/assistant/add/",
        assistant_form(
            name="Premium coach",
            kind="permanent",
            vapi_assistant_id=f"  {NEW_VAPI_ID.upper()} ",
            default_variables='{"companyName": "Acme"}',
            **{
                "client_variables-TOTAL_FORMS": "1",
                "client_variables-0-name": "topic",
                "client_variables-0-value_type": "string",
                "client_variables-0-max_length": "50",
            },
        ),
    )

    assertRedirects(response, "/admin/assistants/assistant/", fetch_redirect_response=False)
    assistant = Assistant.objects.get()
    assert (assistant.name, assistant.kind, str(assistant.vapi_assistant_id), assistant.config) == (
        "Premium coach",
        "permanent",
        NEW_VAPI_ID,
        None,
    )
    assert assistant.default_variables == {"companyName": "Acme"}
    assert assistant.vapi_target() == {"assistantId": NEW_VAPI_ID}
    assert list(assistant.client_variables.values_list("name", "value_type", "max_length")) == [("topic", "string", 50)]


def test_a_valid_transient_assistant_with_an_empty_variables_box_is_saved_without_defaults(admin_client, db):
    config = {"firstMessage": "Hi {{customerName}}!", "voice": {"provider": "vapi", "voiceId": "Elliot"}}

    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config=json.dumps(config)))

    assertRedirects(response, "/admin/assistants/assistant/", fetch_redirect_response=False)
    assistant = Assistant.objects.get()
    assert (assistant.kind, assistant.vapi_assistant_id, assistant.config, assistant.default_variables) == (
        "transient",
        None,
        config,
        {},
    )


def test_a_client_variable_with_a_bad_name_is_refused_in_the_assistant_form(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/assistant/add/",
        assistant_form(
            config='{"firstMessage": "Hi"}',
            **{
                "client_variables-TOTAL_FORMS": "1",
                "client_variables-0-name": "customer name",
                "client_variables-0-value_type": "string",
                "client_variables-0-max_length": "50",
            },
        ),
    )

    assert response.status_code == HTTPStatus.OK
    assert response.context["inline_admin_formsets"][0].formset.errors == [
        {"name": ["Not a valid variable name: use letters, digits and _ only, not starting with a digit."]}
    ]
    assert not Assistant.objects.exists()


def test_the_assistant_form_shows_a_stored_config_indented_and_no_null_for_an_empty_one(admin_client, alice):
    transient = alice.assistant_type.default_assistant
    transient.refresh_from_db()  # PostgreSQL stores JSON keys in its own order

    transient_page = admin_client.get(f"/admin/assistants/assistant/{transient.pk}/change/")
    permanent_page = admin_client.get(f"/admin/assistants/assistant/{alice.assistant.pk}/change/")

    assert transient_page.context["adminform"].form["config"].value() == json.dumps(transient.config, indent=2)
    assert permanent_page.context["adminform"].form["config"].value() == ""


def test_editing_an_assistant_through_the_admin_changes_what_vapi_receives(admin_client, alice):
    transient = alice.assistant_type.default_assistant
    new_config = {**transient.config, "firstMessage": "Hello {{customerName}}, let's practise."}

    response = admin_client.post(
        f"/admin/assistants/assistant/{transient.pk}/change/",
        assistant_form(
            name=transient.name,
            config=json.dumps(new_config),
            default_variables=json.dumps(transient.default_variables),
            **{
                "client_variables-TOTAL_FORMS": "1",
                "client_variables-INITIAL_FORMS": "1",
                "client_variables-0-id": str(transient.client_variables.get().pk),
                "client_variables-0-assistant": str(transient.pk),
                "client_variables-0-name": "topic",
                "client_variables-0-value_type": "string",
                "client_variables-0-max_length": "20",
            },
        ),
    )

    assertRedirects(response, "/admin/assistants/assistant/", fetch_redirect_response=False)
    transient.refresh_from_db()
    assert transient.vapi_target() == {"assistant": new_config}


def test_assistants_can_be_found_by_name_or_part_of_their_vapi_id(admin_client, alice):
    by_name = admin_client.get("/admin/assistants/assistant/", {"q": "premium"})
    by_id = admin_client.get("/admin/assistants/assistant/", {"q": PERMANENT_ID.split("-")[1]})

    assert [a.name for a in by_name.context["cl"].result_list] == ["Premium coach"]
    assert [a.name for a in by_id.context["cl"].result_list] == ["Premium coach"]


def test_the_default_assistant_picker_finds_assistants_by_name(admin_client, alice):
    response = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "assistants", "model_name": "assistanttype", "field_name": "default_assistant", "term": "coach"},
    )

    assert response.status_code == HTTPStatus.OK
    assert [item["text"] for item in response.json()["results"]] == ["Premium coach", "Sales coach"]


# --- Assistant types and mappings ---------------------------------------------------------------


def test_the_mapping_forms_assistant_type_picker_lists_types_by_name(admin_client, alice):
    AssistantType.objects.create(slug="renewals")
    AssistantType.objects.create(slug="onboarding")

    response = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "assistants", "model_name": "usermapping", "field_name": "assistant_type", "term": ""},
    )

    assert response.status_code == HTTPStatus.OK
    assert [item["text"] for item in response.json()["results"]] == ["onboarding", "renewals", "sales-coach"]


def test_the_assistant_type_list_shows_each_types_default_assistant_and_mapped_users(admin_client, alice):
    AssistantType.objects.create(slug="support", mapped_users_only=True)

    response = admin_client.get("/admin/assistants/assistanttype/")

    assert response.status_code == HTTPStatus.OK
    rows = response.context["cl"].result_list
    assert [(t.slug, t.default_assistant and t.default_assistant.name, t.mapping_count) for t in rows] == [
        ("sales-coach", "Sales coach", 1),
        ("support", None, 0),
    ]
    assertContains(response, '<td class="field-default_assistant_name">Sales coach</td>', html=True)
    assertContains(
        response,
        '<td class="field-who_may_call">Everyone; <a href="/admin/assistants/usermapping/?assistant_type__id__exact='
        f'{alice.assistant_type.pk}">1 mapped user</a> gets their own assistant</td>',
        html=True,
    )
    assertContains(response, '<td class="field-who_may_call">Only mapped users (none yet)</td>', html=True)


def mapping_form(alice, **fields) -> dict:
    return {
        "user_id": "dave",
        "assistant_type": str(alice.assistant_type.pk),
        "assistant": str(alice.assistant.pk),
        "variable_values": "",
        **fields,
    }


def test_a_mapping_is_saved_through_the_admin(admin_client, alice):
    response = admin_client.post(
        "/admin/assistants/usermapping/add/", mapping_form(alice, variable_values='{"customerName": "Dave"}')
    )

    assertRedirects(response, "/admin/assistants/usermapping/", fetch_redirect_response=False)
    mapping = UserMapping.objects.get(user_id="dave")
    assert (mapping.assistant_type, mapping.assistant, mapping.variable_values) == (
        alice.assistant_type,
        alice.assistant,
        {"customerName": "Dave"},
    )


def test_a_second_mapping_for_the_same_user_and_type_is_refused(admin_client, alice):
    response = admin_client.post("/admin/assistants/usermapping/add/", mapping_form(alice, user_id="alice"))

    assert messages_of(field_errors(response)) == {
        "__all__": ["This user already has a mapping for this assistant type; edit that one."]
    }
    assert UserMapping.objects.filter(user_id="alice").count() == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            "{customerName: Dave}",
            "This is not valid JSON: line 1, column 2: a name is not in double quotes, "
            "or there is a comma after the last item.",
        ),
        ('["Dave"]', 'Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.'),
        (
            '{"customer name": "Dave"}',
            "'customer name' is not a valid variable name: use letters, digits and _ only, not starting with a digit.",
        ),
    ],
)
def test_a_mapping_with_bad_variable_values_is_not_saved(admin_client, alice, values, message):
    response = admin_client.post("/admin/assistants/usermapping/add/", mapping_form(alice, variable_values=values))

    assert messages_of(field_errors(response)) == {"variable_values": [message]}
    assert not UserMapping.objects.filter(user_id="dave").exists()


# --- Call log ------------------------------------------------------------------------------------


def test_the_call_log_cannot_be_added_to(admin_client, call_logs):
    assert admin_client.get("/admin/calls/calllog/add/").status_code == HTTPStatus.FORBIDDEN
    assert admin_client.post("/admin/calls/calllog/add/", {"user_id": "mallory"}).status_code == HTTPStatus.FORBIDDEN
    assert CallLog.objects.count() == 3


def test_a_call_log_entry_is_shown_read_only(admin_client, call_logs):
    log = call_logs["rejected"]

    response = admin_client.get(f"/admin/calls/calllog/{log.pk}/change/")

    assert response.status_code == HTTPStatus.OK
    assert response.context["has_change_permission"] is False
    assert response.context["adminform"].form.fields == {}
    assertContains(response, '<div class="readonly">bob</div>', html=True)
    assertContains(response, '<div class="readonly">variable_not_allowed</div>', html=True)
    assertContains(response, '<div class="readonly">req-rejected</div>', html=True)
    assertNotContains(response, 'name="user_id"')
    assertNotContains(response, 'name="_save"')


def test_posting_to_a_call_log_entry_changes_nothing(admin_client, call_logs):
    log = call_logs["rejected"]
    before = model_to_dict(log)

    response = admin_client.post(
        f"/admin/calls/calllog/{log.pk}/change/",
        {**{k: v for k, v in before.items() if v is not None}, "user_id": "mallory", "outcome": "created"},
    )

    assert response.status_code == HTTPStatus.FORBIDDEN
    log.refresh_from_db()
    assert model_to_dict(log) == before


def test_call_log_entries_cannot_be_deleted(admin_client, call_logs):
    log = call_logs["failed"]

    assert admin_client.get(f"/admin/calls/calllog/{log.pk}/delete/").status_code == HTTPStatus.FORBIDDEN
    confirmed = admin_client.post(f"/admin/calls/calllog/{log.pk}/delete/", {"post": "yes"})
    assert confirmed.status_code == HTTPStatus.FORBIDDEN
    bulk = admin_client.post(
        "/admin/calls/calllog/", {"action": "delete_selected", "_selected_action": [log.pk], "post": "yes"}, follow=True
    )
    assertNotContains(bulk, 'value="delete_selected"')
    assert CallLog.objects.filter(pk=log.pk).exists()
    assert CallLog.objects.count() == 3


def test_the_call_log_lists_newest_first(admin_client, call_logs):
    assert listed(admin_client.get("/admin/calls/calllog/")) == ["req-failed", "req-rejected", "req-created"]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("created", ["req-created"]), ("rejected", ["req-rejected"]), ("failed", ["req-failed"]), ("pending", [])],
)
def test_the_call_log_filters_by_outcome(admin_client, call_logs, outcome, expected):
    assert listed(admin_client.get("/admin/calls/calllog/", {"outcome__exact": outcome})) == expected


def test_the_call_log_filters_by_assistant(admin_client, alice, call_logs):
    sales_coach = alice.assistant_type.default_assistant

    by_sales_coach = admin_client.get("/admin/calls/calllog/", {"assistant__id__exact": sales_coach.pk})
    by_premium = admin_client.get("/admin/calls/calllog/", {"assistant__id__exact": alice.assistant.pk})

    assert listed(by_sales_coach) == ["req-failed", "req-rejected"]
    assert listed(by_premium) == ["req-created"]


def test_the_call_log_filters_by_date(admin_client, call_logs):
    november = admin_client.get("/admin/calls/calllog/", {"created_at__year": 2026, "created_at__month": 11})
    december_3 = admin_client.get(
        "/admin/calls/calllog/", {"created_at__year": 2026, "created_at__month": 12, "created_at__day": 3}
    )

    assert listed(november) == ["req-created"]
    assert listed(december_3) == ["req-failed"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice", ["req-created"]),
        ("carol", ["req-failed"]),
        (CALL_ID, ["req-created"]),
        ("3f1c9a52", ["req-created"]),
        ("req-rejected", ["req-rejected"]),
        ("nobody", []),
    ],
)
def test_the_call_log_is_searchable_by_user_id_vapi_call_id_and_request_id(admin_client, call_logs, query, expected):
    assert listed(admin_client.get("/admin/calls/calllog/", {"q": query})) == expected


def test_a_call_started_through_the_proxy_appears_in_the_call_log_admin(admin_client, client, sales_coach):
    started = post_call(client, {"assistant": {"userId": "erin", "assistantType": "sales-coach"}})
    log = CallLog.objects.get()

    response = admin_client.get("/admin/calls/calllog/", {"q": started["X-Request-ID"]})

    assert started.status_code == HTTPStatus.CREATED
    assert [row.pk for row in response.context["cl"].result_list] == [log.pk]
    assertContains(response, '<td class="field-user_id">erin</td>', html=True)
    assertNotContains(response, TEST_VAPI_KEY)

