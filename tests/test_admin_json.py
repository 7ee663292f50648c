"""The JSON boxes staff edit in the admin: where invalid JSON is broken, in words; indented when shown."""

import json
from http import HTTPStatus

import pytest
from django.utils.html import escape
from pytest_django.asserts import assertContains, assertRedirects

from assistants.models import Assistant
from calls.models import ApiKey
from tests.test_admin import assistant_form, field_errors, messages_of


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def config_errors(admin_client, config: str) -> list[str]:
    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config=config))
    return messages_of(field_errors(response)).get("config", [])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            '{\n  "firstMessage": "Hi"\n  "voice": {"provider": "vapi"}\n}',
            "This is not valid JSON: line 3, column 3: a comma is missing between two items.",
        ),
        (
            "{\n  'firstMessage': 'Hi'\n}",
            "This is not valid JSON: line 2, column 3: a name is not in double quotes, "
            "or there is a comma after the last item.",
        ),
        (
            '{"firstMessage": Hi}',
            'This is not valid JSON: line 1, column 18: a value is missing or not JSON '
            '(text needs double quotes, e.g. "Hi").',
        ),
        (
            '{"firstMessage": "Hi}',
            "This is not valid JSON: line 1, column 18: a text is not closed with a double quote.",
        ),
        ('{"firstMessage": "Hi"}}', "This is not valid JSON: line 1, column 23: there is more after the end of "
         "the JSON (only one value is allowed)."),
        ('{"temperature": NaN}', "This is not valid JSON: NaN is not a JSON number."),
        ('{"temperature": 1e999}', "This is not valid JSON: the number 1e999 is out of range."),
    ],
)
def test_invalid_json_in_the_config_says_where_it_is_broken(admin_client, db, config, message):
    assert config_errors(admin_client, config) == [message]
    assert not Assistant.objects.exists()


def test_the_config_box_keeps_what_staff_typed_when_it_is_not_json(admin_client, db):
    typed = '{\n  "firstMessage": "Hi"\n  "voice": {}\n}'

    response = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config=typed))

    assert response.context["adminform"].form["config"].value() == typed


def test_a_config_is_shown_indented_after_saving_and_when_another_field_is_wrong(admin_client, db):
    compact = '{"firstMessage":"Hi {{name}}","voice":{"provider":"vapi","voiceId":"Elliot"}}'
    indented = (
        '{\n  "firstMessage": "Hi {{name}}",\n  "voice": {\n    "provider": "vapi",\n    "voiceId": "Elliot"\n  }\n}'
    )

    refused = admin_client.post("/admin/assistants/assistant/add/", assistant_form(name="", config=compact))
    saved = admin_client.post("/admin/assistants/assistant/add/", assistant_form(config=compact))
    assistant = Assistant.objects.get()
    shown = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/change/")

    assert messages_of(field_errors(refused)) == {"name": ["This field is required."]}
    assert refused.context["adminform"].form["config"].value() == indented
    assertRedirects(saved, "/admin/assistants/assistant/", fetch_redirect_response=False)
    stored = json.dumps(assistant.config, indent=2)  # PostgreSQL keeps JSON keys in its own order
    assert json.loads(stored) == json.loads(compact)
    assert shown.context["adminform"].form["config"].value() == stored
    assertContains(shown, f"{escape(stored)}</textarea>")


def test_the_json_boxes_are_monospace_and_tall_enough_for_a_config(admin_client, db):
    response = admin_client.get("/admin/assistants/assistant/add/")

    form = response.context["adminform"].form
    assert form.fields["config"].widget.attrs["rows"] == 24
    assert form.fields["default_variables"].widget.attrs["rows"] == 6
    assert "monospace" in form.fields["config"].widget.attrs["style"]
    assertContains(response, 'id="id_config"')


def test_no_default_variables_is_an_empty_box_and_saving_it_unchanged_changes_nothing(admin_client, db):
    added = admin_client.get("/admin/assistants/assistant/add/")
    assert added.context["adminform"].form["default_variables"].value() == ""
    assistant = Assistant.objects.create(name="Plain", config={"firstMessage": "Hi"})
    form = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/change/").context["adminform"].form

    assert form["default_variables"].value() == ""
    assert not form.fields["default_variables"].has_changed({}, "")
    assert form.fields["default_variables"].has_changed({}, '{"companyName": "Acme"}')
    assert form.fields["default_variables"].has_changed({"companyName": "Acme"}, "")


def test_the_longest_call_is_set_in_the_assistant_form(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/assistant/add/",
        assistant_form(config='{"firstMessage": "Hi"}', max_duration_seconds="900", notes="For the spring campaign."),
    )

    assert response.status_code == HTTPStatus.FOUND
    assert Assistant.objects.values_list("max_duration_seconds", "notes").get() == (900, "For the spring campaign.")


def test_default_variables_that_are_not_an_object_are_refused_in_words(admin_client, db):
    response = admin_client.post(
        "/admin/assistants/assistant/add/",
        assistant_form(config='{"firstMessage": "Hi"}', default_variables='["Acme"]'),
    )

    assert messages_of(field_errors(response)) == {
        "default_variables": ['Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.']
    }


def test_an_api_keys_phone_number_ids_say_where_the_json_is_broken(admin_client, db):
    response = admin_client.post(
        "/admin/calls/apikey/add/",
        {"name": "Backend", "allowed_phone_number_ids": '["5f1c", ]', "calls_per_minute": ""},
    )

    assert response.status_code == HTTPStatus.OK
    assert messages_of(field_errors(response)) == {
        "allowed_phone_number_ids": [
            'This is not valid JSON: line 1, column 10: a value is missing or not JSON (text needs double quotes, '
            'e.g. "Hi").'
        ]
    }
    assert not ApiKey.objects.exists()


def test_stored_json_survives_a_save_unchanged(admin_client, sales_coach):
    assistant = sales_coach.default_assistant
    before = assistant.config
    page = admin_client.get(f"/admin/assistants/assistant/{assistant.pk}/change/")
    form = page.context["adminform"].form

    admin_client.post(
        f"/admin/assistants/assistant/{assistant.pk}/change/",
        assistant_form(
            name=assistant.name,
            config=form["config"].value(),
            default_variables=form["default_variables"].value(),
            **{
                "client_variables-TOTAL_FORMS": "1",
                "client_variables-INITIAL_FORMS": "1",
                "client_variables-0-id": str(assistant.client_variables.get().pk),
                "client_variables-0-assistant": str(assistant.pk),
                "client_variables-0-name": "topic",
                "client_variables-0-value_type": "string",
                "client_variables-0-max_length": "20",
            },
        ),
    )

    assistant.refresh_from_db()
    assert assistant.config == before
    assert json.loads(form["config"].value()) == before
