"""Every change to assistants, assistant types and mappings is kept with who and when, and can be restored."""

import json
from http import HTTPStatus

import pytest
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from assistants.models import Assistant
from calls.models import local_time
from tests.test_admin import assistant_form, mapping_form
from tests.test_admin_import import ID_A, vapi_assistant


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def save_config(admin_client, assistant: Assistant, config: dict):
    variable = assistant.client_variables.get()
    response = admin_client.post(
        f"/admin/assistants/assistant/{assistant.pk}/change/",
        assistant_form(
            name=assistant.name,
            config=json.dumps(config),
            default_variables=json.dumps(assistant.default_variables),
            **{
                "client_variables-TOTAL_FORMS": "1",
                "client_variables-INITIAL_FORMS": "1",
                "client_variables-0-id": str(variable.pk),
                "client_variables-0-assistant": str(assistant.pk),
                "client_variables-0-name": variable.name,
                "client_variables-0-value_type": variable.value_type,
                "client_variables-0-max_length": str(variable.max_length),
            },
        ),
    )
    assertRedirects(response, "/admin/assistants/assistant/", fetch_redirect_response=False)


def form_data(form) -> dict:
    """What a browser posts for an unchanged admin form."""
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[name] = "on"
        elif value not in (False, None):
            data[name] = str(value)
    return data


@pytest.fixture
def edited_twice(admin_client, sales_coach):
    """The sales coach's first message changed twice by the admin user, after the fixture created it."""
    assistant = sales_coach.default_assistant
    original = assistant.config
    first = {**original, "firstMessage": "Hello {{customerName}}."}
    second = {**original, "firstMessage": "Good day {{customerName}}."}
    save_config(admin_client, assistant, first)
    save_config(admin_client, assistant, second)
    return assistant, [original, first, second]


def test_the_history_lists_each_change_with_who_made_it_newest_first(admin_client, edited_twice):
    assistant, configs = edited_twice

    response = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/history/")

    assert response.status_code == HTTPStatus.OK
    records = list(response.context["page_obj"].object_list)
    assert [(r.history_type, r.history_user and r.history_user.username, r.config) for r in records] == [
        ("~", "admin", configs[2]),
        ("~", "admin", configs[1]),
        ("+", None, configs[0]),  # created by the fixture, outside any request
    ]
    for record in records:
        assertContains(response, f"/admin/assistants/assistant/{assistant.pk}/history/{record.history_id}/")
    admin_user = records[0].history_user
    assertContains(response, f'<a href="/admin/auth/user/{admin_user.pk}/change/">admin</a>', count=2, html=True)


def test_an_older_version_is_shown_and_restoring_it_brings_its_config_back(admin_client, edited_twice):
    assistant, configs = edited_twice
    oldest_change = assistant.history.order_by("history_date")[1]  # the first edit
    url = f"/admin/assistants/assistant/{assistant.pk}/history/{oldest_change.history_id}/"

    shown = admin_client.get(url)
    form = shown.context["adminform"].form
    assert json.loads(form["config"].value()) == configs[1]
    assertContains(shown, "<h1>Restore an older version of Sales coach</h1>", html=True)
    saved = local_time(oldest_change.history_date)
    assertContains(shown, f"Saved on {saved} by admin: this is how “Sales coach” was then.")
    assertContains(shown, '<input type="submit" value="Restore this version" class="default" name="_save">', html=True)

    restored = admin_client.post(url, form_data(form), follow=True)

    assert restored.redirect_chain == [(f"/admin/assistants/assistant/{assistant.pk}/change/", HTTPStatus.FOUND)]
    when = local_time(oldest_change.history_date)
    assert [str(m) for m in restored.context["messages"]] == [
        f"Restored “Sales coach” to its version of {when}: the restore is the newest entry in its history, "
        "so it can be undone the same way."
    ]
    assistant.refresh_from_db()
    assert assistant.config == configs[1]
    newest = assistant.history.first()
    assert (newest.history_type, newest.history_user.username, newest.config) == ("~", "admin", configs[1])
    assert assistant.history.count() == 4


def test_the_history_says_which_settings_of_the_config_changed_in_json(admin_client, edited_twice):
    assistant, configs = edited_twice
    config = {**configs[2], "model": {**configs[2]["model"], "model": "gpt-4o"}, "endCallMessage": "Bye!"}
    save_config(admin_client, assistant, config)

    response = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/history/")

    newest, previous = list(response.context["page_obj"].object_list)[:2]
    assert newest.history_delta_changes == [
        {"field": "Assistant config, model.model", "old": '"gpt-4o-mini"', "new": '"gpt-4o"'},
        {"field": "Assistant config, endCallMessage", "old": "(not set)", "new": '"Bye!"'},
    ]
    assert previous.history_delta_changes == [
        {
            "field": "Assistant config, firstMessage",
            "old": '"Hello {{customerName}}."',
            "new": '"Good day {{customerName}}."',
        },
    ]
    version = assistant.history.order_by("history_date")[0]
    assertContains(
        response,
        f'<a href="/admin/assistants/assistant/{assistant.pk}/history/{version.history_id}/">'
        f"{local_time(version.history_date)}</a>",
        html=True,
    )


def test_mapping_and_type_changes_are_kept_with_the_user(admin_client, alice):
    admin_client.post(
        f"/admin/assistants/usermapping/{alice.pk}/change/",
        mapping_form(alice, user_id="alice", variable_values='{"customerName": "Alice B."}'),
    )
    kind = alice.assistant_type
    admin_client.post(
        f"/admin/assistants/assistanttype/{kind.pk}/change/",
        {"slug": "sales-coach", "description": "Practice calls", "is_active": "on", "default_assistant": kind.default_assistant_id},
    )

    mapping_page = admin_client.get(f"/admin/assistants/usermapping/{alice.pk}/history/")
    type_page = admin_client.get(f"/admin/assistants/assistanttype/{kind.pk}/history/")

    mapping_versions = list(mapping_page.context["page_obj"].object_list)
    type_versions = list(type_page.context["page_obj"].object_list)
    assert [(v.history_user and v.history_user.username, v.variable_values) for v in mapping_versions] == [
        ("admin", {"customerName": "Alice B."}),
        (None, {"customerName": "Alice A."}),
    ]
    assert [(v.history_user and v.history_user.username, v.description) for v in type_versions] == [
        ("admin", "Practice calls"),
        (None, ""),
    ]


def test_an_import_from_vapi_is_in_the_history_with_who_ran_it(admin_client, fake_vapi, db):
    fake_vapi.reply(200, [vapi_assistant(ID_A, "Onboarding")])
    admin_client.post("/admin/assistants/assistant/import-from-vapi/")
    fake_vapi.reply(200, [vapi_assistant(ID_A, "Onboarding v2")])
    admin_client.post("/admin/assistants/assistant/import-from-vapi/")

    assistant = Assistant.objects.get(vapi_assistant_id=ID_A)
    assert [(v.name, v.history_user.username, v.history_change_reason) for v in assistant.history.all()] == [
        ("Onboarding v2", "admin", "Name updated from Vapi"),
        ("Onboarding", "admin", "Imported from Vapi"),
    ]


def test_the_history_says_a_restore_or_an_import_in_what_happened_and_has_no_empty_why_column(
    admin_client, fake_vapi, edited_twice
):
    assistant, _ = edited_twice
    first_edit = assistant.history.order_by("history_date")[1]
    url = f"/admin/assistants/assistant/{assistant.pk}/history/{first_edit.history_id}/"
    admin_client.post(url, form_data(admin_client.get(url).context["adminform"].form))
    fake_vapi.reply(200, [vapi_assistant(ID_A, "Onboarding")])
    admin_client.post("/admin/assistants/assistant/import-from-vapi/")
    imported = Assistant.objects.get(vapi_assistant_id=ID_A)

    restored_page = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/history/")
    imported_page = admin_client.get(f"/admin/assistants/assistant/{imported.pk}/history/")

    when = local_time(first_edit.history_date)
    assertContains(restored_page, f"<td>Restored the version of {when}</td>", count=1, html=True)
    assertContains(restored_page, "<td>Changed</td>", count=2, html=True)
    assertContains(imported_page, "<td>Imported from Vapi</td>", count=1, html=True)
    for page in (restored_page, imported_page):
        assertNotContains(page, '<th scope="col">Why</th>', html=True)
