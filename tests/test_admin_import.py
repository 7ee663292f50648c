"""Importing the organization's assistants from Vapi (GET /assistant) on the assistant changelist."""

from http import HTTPStatus

import httpx
import pytest
from pytest_django.asserts import assertContains, assertNotContains

from assistants.models import Assistant
from calls.vapi import VapiClient, VapiInvalidResponse, get_vapi_client
from tests.conftest import PERMANENT_ID, TEST_VAPI_KEY

IMPORT = "/admin/assistants/assistant/import-from-vapi/"
CHANGELIST = "/admin/assistants/assistant/"
ID_A = "11111111-1111-4111-8111-111111111111"
ID_B = "22222222-2222-4222-8222-222222222222"
ID_C = "33333333-3333-4333-8333-333333333333"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def vapi_assistant(vapi_id: str, name: str | None) -> dict:
    """An entry of Vapi's GET /assistant answer (the fields that matter here, and some that don't)."""
    item = {
        "id": vapi_id,
        "orgId": "8d0f5a7e-2b1c-4e3d-9f8a-7c6b5a4d3e2f",
        "createdAt": "2026-11-20T09:00:00.000Z",
        "updatedAt": "2026-11-21T09:00:00.000Z",
        "model": {"provider": "openai", "model": "gpt-4o"},
    }
    if name is not None:
        item["name"] = name
    return item


def shown_messages(response) -> list[tuple[str, str]]:
    """The messages the changelist shows after the import redirected there."""
    assert response.redirect_chain == [(CHANGELIST, HTTPStatus.FOUND)]
    return [(message.level_tag, message.message) for message in response.context["messages"]]


def test_import_creates_renames_and_leaves_alone_and_says_so(admin_client, fake_vapi, alice):
    premium = alice.assistant  # permanent, PERMANENT_ID, named "Premium coach"
    premium.is_active = False
    premium.backend_url = "https://backend.example.com/vapi"
    premium.save()
    Assistant.objects.create(
        name="Support", kind=Assistant.Kind.PERMANENT, vapi_assistant_id=ID_C, notes="Kept by staff."
    )
    fake_vapi.reply(
        200,
        [
            vapi_assistant(ID_A, "Onboarding"),
            vapi_assistant(PERMANENT_ID, "Premium coach v2"),
            vapi_assistant(ID_B, None),
            vapi_assistant(ID_C, "Support"),
        ],
    )

    response = admin_client.post(IMPORT, follow=True)

    assert shown_messages(response) == [
        ("success", "Created 2: Onboarding, Vapi assistant 22222222; renamed 1: Premium coach → Premium coach v2; unchanged 1.")
    ]
    request = fake_vapi.requests[-1]
    assert (request.method, str(request.url)) == ("GET", "https://vapi.test/assistant?limit=1000")
    assert request.headers["Authorization"] == f"Bearer {TEST_VAPI_KEY}"
    premium.refresh_from_db()
    assert (premium.name, premium.is_active, premium.backend_url, premium.default_variables) == (
        "Premium coach v2",
        False,
        "https://backend.example.com/vapi",
        {"companyName": "Acme"},
    )
    assert premium.client_variables.count() == 2
    created = Assistant.objects.get(vapi_assistant_id=ID_A)
    assert (created.name, created.kind, created.is_active, created.config, created.notes) == (
        "Onboarding",
        "permanent",
        True,
        None,
        "Imported from Vapi.",
    )
    assert Assistant.objects.get(vapi_assistant_id=ID_C).notes == "Kept by staff."
    transient = alice.assistant_type.default_assistant
    assert Assistant.objects.get(pk=transient.pk).name == "Sales coach"


def test_importing_twice_changes_nothing_the_second_time(admin_client, fake_vapi, db):
    fake_vapi.reply(200, [vapi_assistant(ID_A, "Onboarding"), vapi_assistant(ID_B, "Support")])

    first = admin_client.post(IMPORT, follow=True)
    second = admin_client.post(IMPORT, follow=True)

    assert shown_messages(first) == [("success", "Created 2: Onboarding, Support; unchanged 0.")]
    assert shown_messages(second) == [("success", "Unchanged 2.")]
    assert sorted(Assistant.objects.values_list("name", flat=True)) == ["Onboarding", "Support"]


def test_a_vapi_name_taken_by_a_transient_assistant_gets_the_id_added_and_the_transient_one_is_untouched(
    admin_client, fake_vapi, sales_coach
):
    fake_vapi.reply(200, [vapi_assistant(ID_A, "Sales coach")])

    response = admin_client.post(IMPORT, follow=True)

    assert shown_messages(response) == [("success", "Created 1: Sales coach (11111111); unchanged 0.")]
    assert Assistant.objects.get(vapi_assistant_id=ID_A).name == "Sales coach (11111111)"
    assert Assistant.objects.get(kind="transient").name == "Sales coach"


def test_entries_without_a_valid_id_are_skipped_and_counted(admin_client, fake_vapi, db):
    fake_vapi.reply(200, [{"name": "No id"}, vapi_assistant("not-a-uuid", "Bad id"), vapi_assistant(ID_A, "Good")])

    response = admin_client.post(IMPORT, follow=True)

    assert shown_messages(response) == [("success", "Created 1: Good; unchanged 0; skipped 2 without a valid id.")]


def test_a_full_page_from_vapi_says_more_may_exist(admin_client, fake_vapi, db, monkeypatch):
    monkeypatch.setattr("assistants.vapi_import.IMPORT_LIMIT", 2)
    fake_vapi.reply(200, [vapi_assistant(ID_A, "A"), vapi_assistant(ID_B, "B")])

    response = admin_client.post(IMPORT, follow=True)

    assert str(fake_vapi.requests[-1].url) == "https://vapi.test/assistant?limit=2"
    assert shown_messages(response) == [
        ("success", "Created 2: A, B; unchanged 0."),
        (
            "warning",
            "Vapi listed 2 assistants, the most one import asks for; any beyond those (the oldest) were not imported.",
        ),
    ]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, {"message": f"Invalid key {TEST_VAPI_KEY}"}, "Vapi refused the proxy's key (401); check VAPI_API_KEY. Nothing was imported."),
        (403, {"message": "Forbidden"}, "Vapi refused the proxy's key (403); check VAPI_API_KEY. Nothing was imported."),
        (500, {"message": "Internal error"}, "Vapi answered with status 500: Internal error. Nothing was imported."),
        (200, {"id": ID_A}, "Vapi's answer was not a list of assistants; nothing was imported."),
    ],
)
def test_a_vapi_error_is_a_plain_message_and_imports_nothing(admin_client, fake_vapi, db, status, body, message):
    fake_vapi.reply(status, body)

    response = admin_client.post(IMPORT, follow=True)

    assert response.status_code == HTTPStatus.OK
    assert [(m.level_tag, m.message) for m in response.context["messages"]] == [("error", message)]
    assertNotContains(response, TEST_VAPI_KEY)
    assert not Assistant.objects.exists()


def test_a_vapi_timeout_is_a_plain_message(admin_client, fake_vapi, db):
    fake_vapi.raise_error(httpx.ReadTimeout)

    response = admin_client.post(IMPORT, follow=True)

    assert shown_messages(response) == [
        ("error", "Vapi did not answer in time; nothing was imported. Try again in a moment.")
    ]


def test_without_a_vapi_key_the_import_says_so_and_asks_nobody(admin_client, fake_vapi, db, settings):
    settings.VAPI_API_KEY = ""

    response = admin_client.post(IMPORT, follow=True)

    assert shown_messages(response) == [("error", "No Vapi key is configured (VAPI_API_KEY), so nothing was imported.")]
    assert fake_vapi.requests == []


def test_the_import_button_is_on_the_assistant_list_and_needs_a_post(admin_client, fake_vapi, db):
    page = admin_client.get(CHANGELIST)
    by_get = admin_client.get(IMPORT)

    assertContains(page, f'<form method="post" action="{IMPORT}" id="import-from-vapi-form"')
    assertContains(
        page,
        '<button type="submit" id="import-from-vapi-button" title="Adds the assistants of your Vapi organization '
        'that are not here yet, as permanent assistants">Import assistants from Vapi</button>',
        html=True,
    )
    assert (by_get.status_code, by_get["Location"]) == (HTTPStatus.FOUND, CHANGELIST)
    assert fake_vapi.requests == []


def test_staff_who_may_only_view_assistants_cannot_import(client, django_user_model, fake_vapi, db):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_assistant"))
    client.force_login(viewer)

    page = client.get(CHANGELIST)
    response = client.post(IMPORT)

    assertNotContains(page, "import-from-vapi-form")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert fake_vapi.requests == []


def test_list_assistants_refuses_an_answer_that_is_not_a_list_of_objects(fake_vapi):
    fake_vapi.reply(200, [{"id": ID_A}, "not an object"])

    with pytest.raises(VapiInvalidResponse):
        get_vapi_client().list_assistants()


def test_list_assistants_asks_for_the_given_limit(fake_vapi):
    fake_vapi.reply(200, [])

    assert isinstance(get_vapi_client(), VapiClient)
    assert get_vapi_client().list_assistants(limit=5) == []
    assert str(fake_vapi.requests[-1].url) == "https://vapi.test/assistant?limit=5"
