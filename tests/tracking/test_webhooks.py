"""Provider webhooks: each provider authenticated its own way (tracking.webhooks), then parsed,
deduplicated and recorded. `generic` is Standard Webhooks (signed id + timestamp + body);
`instantly` is the Bearer secret its webhook settings send, with a fresh payload timestamp."""

import base64
import binascii
import hashlib
import hmac
import json
import time

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook as ReferenceWebhook

from tests.factories import CampaignFactory, LeadFactory
from tracking.models import EmailEvent, Recipient, Suppression

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret-0123456789"


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.WEBHOOK_SECRETS = {"generic": SECRET, "instantly": SECRET}


@pytest.fixture
def provider():
    """An anonymous client that enforces CSRF, as a provider's server would be."""
    return APIClient(enforce_csrf_checks=True)


@pytest.fixture
def recipient(campaign):
    return Recipient.objects.create(
        campaign=campaign, email="erin@example.org", status="sent", message_id="<abc.123@acme.example>"
    )


def standard_signature(body: bytes, *, msg_id="msg-1", timestamp=None, secret=SECRET) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def as_meta(headers: dict) -> dict:
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def post(client, provider_name: str, payload, *, headers: dict | None = None):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if headers is None:
        headers = standard_signature(body) if provider_name == "generic" else {"Authorization": f"Bearer {SECRET}"}
    return client.post(f"/api/v1/webhooks/{provider_name}/", body, content_type="application/json", **as_meta(headers))


def generic(**fields) -> dict:
    return {"event_id": "evt-1", "type": "open", "message_id": "<abc.123@acme.example>", **fields}


def recent(seconds_ago: int = 60) -> str:
    return (timezone.now() - timezone.timedelta(seconds=seconds_ago)).isoformat()


def test_a_signed_generic_event_is_recorded(provider, recipient):
    occurred = recent()
    response = post(provider, "generic", generic(occurred_at=occurred, user_agent="Mail/1.0"))

    assert response.status_code == 200 and response.json()["recorded"] is True
    event = EmailEvent.objects.get()
    assert (event.type, event.source, event.provider_event_id, event.recipient_id) == (
        "open",
        "generic",
        "evt-1",
        recipient.pk,
    )
    assert event.occurred_at.isoformat() == timezone.datetime.fromisoformat(occurred).isoformat()
    assert event.payload["user_agent"] == "Mail/1.0"


def test_the_generic_scheme_accepts_signatures_made_by_the_reference_standard_webhooks_library(provider, recipient):
    """Interoperability: a sender using the Standard Webhooks library (base64 `whsec_` secret) is accepted."""
    key = b"0123456789abcdef0123456789abcdef"
    reference = ReferenceWebhook(key)
    body = json.dumps(generic()).encode()
    now = timezone.now()
    headers = {
        "webhook-id": "msg-ref",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": "v1,bogus v1," + reference.sign("msg-ref", now, body.decode()).split(",", 1)[1],
    }
    from django.conf import settings

    settings.WEBHOOK_SECRETS = {**settings.WEBHOOK_SECRETS, "generic": "whsec_" + base64.b64encode(key).decode()}
    response = post(provider, "generic", body, headers=headers)
    assert response.status_code == 200 and response.json()["recorded"] is True


def test_the_webhook_id_is_the_event_id_when_the_body_has_none(provider, recipient):
    body = {"type": "click", "message_id": "<abc.123@acme.example>"}
    assert post(provider, "generic", body).status_code == 200
    assert EmailEvent.objects.get().provider_event_id == "msg-1"


def test_a_recipient_is_found_by_message_id_without_brackets_or_by_token(provider, recipient):
    post(provider, "generic", generic(event_id="a", message_id="abc.123@acme.example"))
    post(provider, "generic", {"event_id": "b", "type": "click", "token": recipient.token})
    assert EmailEvent.objects.filter(recipient=recipient).count() == 2


BODY = json.dumps(generic(type="bounce")).encode()


@pytest.mark.parametrize(
    "headers",
    [
        {},  # nothing
        {"X-Signature": "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()},  # the old scheme
        {**standard_signature(BODY), "webhook-signature": ""},
        {**standard_signature(BODY), "webhook-signature": "v1,not base64!"},
        {**standard_signature(BODY), "webhook-signature": "v2," + base64.b64encode(b"x" * 32).decode()},
        {**standard_signature(BODY), "webhook-signature": "garbage-without-comma"},
        {**standard_signature(BODY), "webhook-id": "another-id"},  # the id is signed
        {**standard_signature(BODY), "webhook-timestamp": "soon"},
        {**standard_signature(BODY), "webhook-timestamp": "9" * 40},
        standard_signature(BODY, secret="wrong-secret"),
        standard_signature(b"another body"),
    ],
)
def test_a_bad_or_missing_signature_is_a_401_and_writes_nothing(provider, recipient, headers):
    response = post(provider, "generic", BODY, headers=headers)
    assert response.status_code == 401 and response.json()["detail"]
    assert not EmailEvent.objects.exists() and not Suppression.objects.exists()
    recipient.refresh_from_db()
    assert recipient.status == "sent"


@pytest.mark.parametrize("age", [-400, 400, 86_400])
def test_a_captured_request_cannot_be_replayed_outside_the_tolerance_window(provider, recipient, age):
    """A request signed `age` seconds ago (negative: in the future) is refused, however valid its signature."""
    headers = standard_signature(BODY, timestamp=int(time.time()) - age)
    response = post(provider, "generic", BODY, headers=headers)
    assert response.status_code == 401 and "tolerance" in response.json()["detail"]
    assert not EmailEvent.objects.exists()


def test_within_the_window_a_replay_records_nothing_new(provider, recipient):
    headers = standard_signature(BODY)
    assert post(provider, "generic", BODY, headers=headers).json()["recorded"] is True
    assert post(provider, "generic", BODY, headers=headers).json() == {"recorded": False, "reason": "duplicate event"}
    assert EmailEvent.objects.count() == 1


def test_without_a_configured_secret_nothing_is_accepted(provider, recipient, settings):
    settings.WEBHOOK_SECRETS = {"generic": "", "instantly": ""}
    body = json.dumps(generic()).encode()
    assert post(provider, "generic", body, headers=standard_signature(body, secret="")).status_code == 401
    assert post(provider, "instantly", body, headers={"Authorization": "Bearer "}).status_code == 401
    assert not EmailEvent.objects.exists()


def test_the_reference_library_turns_malformed_headers_into_exceptions_of_its_own():
    """Why the generic verifier is ours, not standardwebhooks' Webhook.verify: on malformed
    headers the library raises ValueError / binascii.Error, not its WebhookVerificationError,
    so each caller must catch them all; and its tolerance is fixed at 5 minutes."""
    reference = ReferenceWebhook(b"0123456789abcdef")
    now = str(int(time.time()))
    with pytest.raises(ValueError):
        reference.verify("{}", {"webhook-id": "1", "webhook-timestamp": now, "webhook-signature": "no-comma"})
    with pytest.raises(binascii.Error):
        reference.verify("{}", {"webhook-id": "1", "webhook-timestamp": now, "webhook-signature": "v1,abc"})
    with pytest.raises(UnicodeDecodeError):
        reference.verify(b"\xff", {"webhook-id": "1", "webhook-timestamp": now, "webhook-signature": "v1,abcd"})


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
        ({"event_id": "e" * 256, "type": "open", "message_id": "x"}, "event_id"),
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


def test_an_unknown_provider_is_a_404_in_json(provider):
    response = post(provider, "nosuchprovider", generic(), headers={})
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


# --- Instantly ---------------------------------------------------------------------------------


@pytest.fixture
def instantly_campaign(org):
    campaign = CampaignFactory(organization=org, channel="instantly", instantly_campaign_id="inst-42", status="running")
    LeadFactory(campaign=campaign, email="Frank@Example.org")
    return campaign


def instantly(event_type: str, **fields) -> dict:
    return {
        "timestamp": recent(5),
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
    response = post(
        provider, "instantly", {"event_type": "email_bounced", "campaign_id": "inst-42", "timestamp": recent()}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong-secret", f"Basic {SECRET}", f"Bearer {SECRET}x"]
)
def test_an_instantly_webhook_without_its_secret_is_a_401(provider, instantly_campaign, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = post(provider, "instantly", instantly("email_bounced"), headers=headers)
    assert response.status_code == 401
    assert not EmailEvent.objects.exists() and not Suppression.objects.exists()


@pytest.mark.parametrize("timestamp", [None, "", "yesterday", "2020-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00"])
def test_an_instantly_payload_with_a_stale_or_missing_timestamp_is_a_401(provider, instantly_campaign, timestamp):
    payload = instantly("email_bounced")
    payload["timestamp"] = timestamp
    if timestamp is None:
        del payload["timestamp"]
    assert post(provider, "instantly", payload).status_code == 401
    assert not EmailEvent.objects.exists()
