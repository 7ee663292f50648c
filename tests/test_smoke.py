from http import HTTPStatus

from calls.models import CallLog
from tests.conftest import TEST_VAPI_KEY, post_call


def test_it_starts_a_web_call_for_a_default_user(client, sales_coach, fake_vapi):
    response = post_call(client, {"assistant": {"userId": "bob", "assistantType": "sales-coach"}})

    assert response.status_code == HTTPStatus.CREATED
    log = CallLog.objects.get()
    assert response.json() == {
        "id": "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11",
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
    sent = fake_vapi.requests[0]
    assert sent.url == "https://vapi.test/call/web"
    assert sent.headers["authorization"] == f"Bearer {TEST_VAPI_KEY}"
    assert fake_vapi.last_json == {
        "assistant": sales_coach.default_assistant.config,
        "assistantOverrides": {
            "variableValues": {"companyName": "Acme", "customerName": "there"},
            "metadata": {"userId": "bob", "assistantType": "sales-coach", "callLogId": log.pk},
        },
    }
    assert (log.outcome, log.status_code, log.upstream_status, log.user_id, log.vapi_call_id) == (
        "created",
        201,
        201,
        "bob",
        "3f1c9a52-6a7e-4c1b-9d1e-0c2f5e8b7a11",
    )
    assert log.request_id == response["X-Request-ID"]
