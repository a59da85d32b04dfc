import hashlib
import hmac
import json

import pytest
from rest_framework.test import APIClient

from tests.factories import CampaignFactory, LeadFactory
from tracking.models import EmailEvent, Recipient, Suppression

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.WEBHOOK_SECRET = SECRET


@pytest.fixture
def provider():
    """An anonymous client that enforces CSRF, as a provider's server would be."""
    return APIClient(enforce_csrf_checks=True)


@pytest.fixture
def recipient(campaign):
    return Recipient.objects.create(
        campaign=campaign, email="erin@example.org", status="sent", message_id="<abc.123@acme.example>"
    )


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, provider_name: str, payload, *, signature: str | None = "auto"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {}
    if signature == "auto":
        headers["HTTP_X_SIGNATURE"] = signed(body)
    elif signature is not None:
        headers["HTTP_X_SIGNATURE"] = signature
    return client.post(f"/api/v1/webhooks/{provider_name}/", body, content_type="application/json", **headers)


def generic(**fields) -> dict:
    return {"event_id": "evt-1", "type": "open", "message_id": "<abc.123@acme.example>", **fields}


def test_a_signed_generic_event_is_recorded(provider, recipient):
    response = post(provider, "generic", generic(occurred_at="2026-01-02T03:04:05Z", user_agent="Mail/1.0"))

    assert response.status_code == 200 and response.json()["recorded"] is True
    event = EmailEvent.objects.get()
    assert (event.type, event.source, event.provider_event_id, event.recipient_id) == (
        "open",
        "generic",
        "evt-1",
        recipient.pk,
    )
    assert event.occurred_at.isoformat() == "2026-01-02T03:04:05+00:00"
    assert event.payload["user_agent"] == "Mail/1.0"


def test_a_recipient_is_found_by_message_id_without_brackets_or_by_token(provider, recipient):
    post(provider, "generic", generic(event_id="a", message_id="abc.123@acme.example"))
    post(provider, "generic", {"event_id": "b", "type": "click", "token": recipient.token})
    assert EmailEvent.objects.filter(recipient=recipient).count() == 2


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "",
        "sha256=" + "0" * 64,
        "sha1=abc",
        "sha256=",
        signed(b"another body"),
        signed(json.dumps(generic()).encode(), secret="wrong-secret"),
    ],
)
def test_a_bad_or_missing_signature_is_a_403_and_writes_nothing(provider, recipient, signature):
    response = post(provider, "generic", generic(type="bounce"), signature=signature)
    assert response.status_code == 403
    assert not EmailEvent.objects.exists() and not Suppression.objects.exists()
    recipient.refresh_from_db()
    assert recipient.status == "sent"


def test_without_a_configured_secret_nothing_is_accepted(provider, recipient, settings):
    settings.WEBHOOK_SECRET = ""
    body = json.dumps(generic()).encode()
    response = post(provider, "generic", body, signature="sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest())
    assert response.status_code == 403


def test_a_replayed_event_is_recorded_once(provider, recipient):
    first = post(provider, "generic", generic(type="click"))
    replay = post(provider, "generic", generic(type="click"))

    assert first.json()["recorded"] is True
    assert replay.status_code == 200 and replay.json() == {"recorded": False, "reason": "duplicate event"}
    assert EmailEvent.objects.count() == 1
    recipient.refresh_from_db()
    assert recipient.first_clicked_at is not None


def test_a_hard_bounce_marks_the_recipient_and_suppresses_the_address(provider, recipient):
    post(provider, "generic", generic(type="bounce", bounce_type="hard"))

    recipient.refresh_from_db()
    assert recipient.status == "bounced"
    assert Suppression.objects.get(email="erin@example.org").reason == "bounced"


def test_a_soft_bounce_is_only_recorded(provider, recipient):
    post(provider, "generic", generic(type="bounce", bounce_type="soft"))
    recipient.refresh_from_db()
    assert recipient.status == "sent" and not Suppression.objects.exists()
    assert EmailEvent.objects.get().type == "bounce"


def test_a_complaint_marks_the_recipient_and_suppresses_the_address(provider, recipient):
    post(provider, "generic", generic(type="complaint"))
    recipient.refresh_from_db()
    assert recipient.status == "complained"
    assert Suppression.objects.get().reason == "complained"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "open", "message_id": "x"}, "event_id"),
        ({"event_id": "e", "type": "teleport", "message_id": "x"}, "type"),
        ({"event_id": "e", "type": "open"}, "message_id"),
        ({"event_id": "e", "type": "open", "message_id": "x", "occurred_at": "yesterday"}, "occurred_at"),
        ({"event_id": "e", "type": "open", "message_id": "x", "link_id": "3"}, "link_id"),
    ],
)
def test_a_malformed_event_is_a_400_naming_the_field(provider, recipient, payload, field):
    response = post(provider, "generic", payload)
    assert response.status_code == 400 and field in response.json()
    assert not EmailEvent.objects.exists()


def test_a_body_that_is_not_json_is_a_400(provider):
    assert post(provider, "generic", b"not json").status_code == 400
    assert post(provider, "generic", b"[1, 2]").status_code == 400


def test_an_event_for_an_unknown_recipient_is_acknowledged_and_ignored(provider, recipient):
    response = post(provider, "generic", generic(message_id="<nobody@example>"))
    assert response.status_code == 200 and response.json()["recorded"] is False
    assert not EmailEvent.objects.exists()


def test_an_unknown_provider_is_a_404(provider):
    assert post(provider, "nosuchprovider", generic()).status_code == 404


# --- Instantly ---------------------------------------------------------------------------------


@pytest.fixture
def instantly_campaign(org):
    campaign = CampaignFactory(organization=org, channel="instantly", instantly_campaign_id="inst-42", status="running")
    LeadFactory(campaign=campaign, email="Frank@Example.org")
    return campaign


def instantly(event_type: str, **fields) -> dict:
    return {
        "timestamp": "2026-02-03T10:00:00.000Z",
        "event_type": event_type,
        "workspace": "ws-1",
        "campaign_id": "inst-42",
        "campaign_name": "Spring",
        "lead_email": "frank@example.org",
        "email_account": "sender@acme.example",
        **fields,
    }


def test_an_instantly_bounce_marks_and_suppresses_the_lead(provider, instantly_campaign):
    response = post(provider, "instantly", instantly("email_bounced"))

    assert response.status_code == 200 and response.json()["recorded"] is True
    recipient = Recipient.objects.get(campaign=instantly_campaign)
    assert (recipient.email, recipient.status) == ("frank@example.org", "bounced")
    assert Suppression.objects.get().email == "frank@example.org"
    assert EmailEvent.objects.get().source == "instantly"


def test_instantly_replies_and_unsubscribes_are_recorded(provider, instantly_campaign):
    post(provider, "instantly", instantly("reply_received", reply_text="Sounds good"))
    post(provider, "instantly", instantly("lead_unsubscribed"))
    assert sorted(EmailEvent.objects.values_list("type", flat=True)) == ["reply", "unsubscribe"]
    assert Recipient.objects.get().status == "unsubscribed"


def test_an_instantly_replay_is_recorded_once(provider, instantly_campaign):
    body = json.dumps(instantly("reply_received")).encode()
    post(provider, "instantly", body)
    post(provider, "instantly", body)
    assert EmailEvent.objects.count() == 1


def test_instantly_events_we_do_not_track_are_acknowledged(provider, instantly_campaign):
    response = post(provider, "instantly", instantly("lead_interested"))
    assert response.status_code == 200 and response.json()["recorded"] is False
    assert not Recipient.objects.exists()


def test_an_instantly_event_for_an_address_not_in_the_campaign_is_ignored(provider, instantly_campaign):
    response = post(provider, "instantly", instantly("email_bounced", lead_email="stranger@example.org"))
    assert response.json()["recorded"] is False
    assert not Recipient.objects.exists() and not Suppression.objects.exists()


def test_an_instantly_event_without_email_is_a_400(provider, instantly_campaign):
    response = post(provider, "instantly", {"event_type": "email_bounced", "campaign_id": "inst-42"})
    assert response.status_code == 400
