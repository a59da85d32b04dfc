"""Provider webhooks: one verifier per provider, one parser per provider, and the ingest into
EmailEvent.

Each provider is authenticated the way it can be (docs/security.md):

- `generic` (our own format, for relays and tools we control) follows the Standard Webhooks
  specification: `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
  (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">`, several separated by spaces while a
  secret is rotated). A timestamp further than WEBHOOK_TOLERANCE_SECONDS from our clock is refused,
  so a captured request cannot be replayed later; within the window, the event id makes a replay
  a no-op.
- `instantly` does not sign its deliveries; its webhook settings send the headers you give them,
  so the secret travels as `Authorization: Bearer <secret>` (compared in constant time), and the
  payload's own `timestamp` must lie within the same tolerance (Instantly retries within 30 s).

A parser turns a payload into a `WebhookEvent`; `webhook_ingest` finds the recipient and records
the event through services.event_record, whose unique (source, provider_event_id) constraint
makes a replayed event a no-op. Event times outside a sane window around now are recorded at the
time received, and the answer says so (campaigns_project.datetimes.event_time_accept).
"""

import base64
import binascii
import contextlib
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign
from campaigns_project.datetimes import event_time_accept

from . import services
from .models import Link, Recipient
from .states import EventType, RecipientStatus


class WebhookRefused(Exception):
    """The request is not authentic (or no longer fresh): 401, nothing read further."""


def webhook_secret(provider: str) -> bytes:
    """The provider's key. A Standard Webhooks secret (`whsec_<base64>`) is decoded as the spec says;
    any other string is used as its UTF-8 bytes."""
    secret = settings.WEBHOOK_SECRETS.get(provider, "")
    if secret.startswith("whsec_"):
        with contextlib.suppress(binascii.Error, ValueError):
            return base64.b64decode(secret[len("whsec_") :] + "==")
    return secret.encode()


def _fresh(timestamp: float, *, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return abs(now - timestamp) <= settings.WEBHOOK_TOLERANCE_SECONDS


class StandardWebhooksVerifier:
    """`generic`: the Standard Webhooks scheme (signed id, timestamp and body)."""

    provider = "generic"
    headers = ("webhook-id", "webhook-timestamp", "webhook-signature")

    def expected(self, *, key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
        return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()

    def key(self) -> bytes:
        return webhook_secret(self.provider)

    def verify(self, *, headers, body: bytes) -> str:
        """The verified webhook-id; raises WebhookRefused."""
        key = self.key()
        if not key:
            raise WebhookRefused("No webhook secret is configured for this provider.")
        msg_id, timestamp, signatures = (headers.get(name, "").strip() for name in self.headers)
        if not (msg_id and timestamp and signatures):
            raise WebhookRefused("Missing webhook-id, webhook-timestamp or webhook-signature.")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise WebhookRefused("webhook-timestamp must be Unix seconds.")
        if not _fresh(int(timestamp)):
            raise WebhookRefused("webhook-timestamp is outside the tolerance window.")
        expected = self.expected(key=key, msg_id=msg_id, timestamp=timestamp, body=body)
        for candidate in signatures.split():
            version, _, encoded = candidate.partition(",")
            if version != "v1":
                continue
            try:
                given = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
            if hmac.compare_digest(expected, given):
                return msg_id
        raise WebhookRefused("No valid signature.")

    def sign(self, *, body: bytes, msg_id: str, timestamp: int | None = None) -> dict[str, str]:
        """The headers a sender adds (our tests and tools, e.g. the fuzz harness)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = self.expected(key=self.key(), msg_id=msg_id, timestamp=stamp, body=body)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }


class InstantlyVerifier:
    """`instantly`: the shared secret it was configured to send, and a fresh payload timestamp."""

    provider = "instantly"

    def verify(self, *, headers, body: bytes) -> str:
        key = webhook_secret(self.provider)
        if not key:
            raise WebhookRefused("No webhook secret is configured for this provider.")
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise WebhookRefused("Missing or wrong Authorization: Bearer secret.")
        return ""

    def verify_fresh(self, payload: dict) -> None:
        raw = payload.get("timestamp")
        stamp = parse_datetime(raw) if isinstance(raw, str) and len(raw) <= 64 else None
        with contextlib.suppress(ValueError, OverflowError, AttributeError, TypeError):
            if stamp is not None and stamp.tzinfo is not None and _fresh(stamp.timestamp()):
                return
        raise WebhookRefused("The payload's timestamp is missing or outside the tolerance window.")


VERIFIERS: dict[str, StandardWebhooksVerifier | InstantlyVerifier] = {
    "generic": StandardWebhooksVerifier(),
    "instantly": InstantlyVerifier(),
}


@dataclass
class WebhookEvent:
    type: str
    provider_event_id: str
    occurred_at: datetime | None = None
    token: str = ""
    message_id: str = ""
    email: str = ""
    provider_campaign_id: str = ""
    link_id: int | None = None
    user_agent: str = ""
    is_machine: bool = False
    with_effects: bool = True
    payload: dict = field(default_factory=dict)


def _text(data: dict, *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str | int) and str(value).strip():
            return str(value).strip()
    return ""


def _when(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value) if len(value) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationError({name: ["Expected an ISO 8601 date-time with a time zone."]})
    return parsed


# --- generic: our own signed format -------------------------------------------------------------

GENERIC_TYPE_ALIASES = {"complaint": EventType.COMPLAIN, "unsubscribed": EventType.UNSUBSCRIBE, "bounced": "bounce"}


def parse_generic(data: dict, *, webhook_id: str = "") -> WebhookEvent:
    """{event_id, type, message_id | token, occurred_at?, link_id?, user_agent?, is_machine?,
    bounce_type? (hard | soft: a soft bounce is recorded without suppressing)}."""
    errors = {}
    event_id = _text(data, "event_id") or webhook_id  # the signed webhook-id when the body has none
    if not event_id or len(event_id) > 255:
        errors["event_id"] = ["Required, at most 255 characters."]
    kind = _text(data, "type").lower()
    kind = GENERIC_TYPE_ALIASES.get(kind, kind)
    if kind not in EventType.values:
        errors["type"] = [f"One of: {', '.join(EventType.values)}."]
    token, message_id = _text(data, "token"), _text(data, "message_id")
    if not token and not message_id:
        errors["message_id"] = ["message_id or token is required."]
    link_id = data.get("link_id")
    if link_id is not None and (isinstance(link_id, bool) or not isinstance(link_id, int)):
        errors["link_id"] = ["Must be an integer."]
    if errors:
        raise ValidationError(errors)
    return WebhookEvent(
        type=kind,
        provider_event_id=event_id,
        occurred_at=_when(_text(data, "occurred_at"), "occurred_at"),
        token=token,
        message_id=message_id,
        link_id=link_id,
        user_agent=_text(data, "user_agent")[:512],
        is_machine=data.get("is_machine") is True,
        with_effects=_text(data, "bounce_type").lower() != "soft",
        payload=data,
    )


# --- instantly: their event payloads, read tolerantly -----------------------------------------

INSTANTLY_TYPES = {
    "email_opened": EventType.OPEN,
    "email_link_clicked": EventType.CLICK,
    "link_clicked": EventType.CLICK,
    "reply_received": EventType.REPLY,
    "email_replied": EventType.REPLY,
    "auto_reply_received": EventType.AUTO_REPLY,
    "email_bounced": EventType.BOUNCE,
    "lead_bounced": EventType.BOUNCE,
    "lead_unsubscribed": EventType.UNSUBSCRIBE,
    "email_unsubscribed": EventType.UNSUBSCRIBE,
    "lead_marked_as_spam": EventType.COMPLAIN,
    "email_marked_as_spam": EventType.COMPLAIN,
    "email_delivered": EventType.DELIVERED,
}


def parse_instantly(data: dict, *, body: bytes) -> WebhookEvent | None:
    """None for an event type we do not track (sent, interested, meeting booked, ...)."""
    kind = INSTANTLY_TYPES.get(_text(data, "event_type", "type", "event").lower())
    if kind is None:
        return None
    email = _text(data, "lead_email", "email", "lead")
    campaign_id = _text(data, "campaign_id", "campaign")
    if not email or not campaign_id:
        raise ValidationError({"lead_email": ["The lead's email and the campaign_id are required."]})
    # Instantly's payloads carry no event id: the body's hash makes an exact replay a duplicate.
    event_id = _text(data, "id", "event_id") or hashlib.sha256(body).hexdigest()
    return WebhookEvent(
        type=kind,
        provider_event_id=event_id[:255],
        occurred_at=_when(_text(data, "timestamp", "occurred_at"), "timestamp"),
        email=services.normalize_email(email),
        provider_campaign_id=campaign_id,
        payload=data,
    )


# --- ingest ------------------------------------------------------------------------------------


def _recipient_for(provider: str, event: WebhookEvent) -> Recipient | None:
    recipients = Recipient.objects.select_related("campaign")
    if event.token:
        return recipients.filter(token=event.token).first()
    if event.message_id:
        bare = event.message_id.strip("<> ")
        return recipients.filter(message_id__in=[f"<{bare}>", bare]).first()
    campaigns = Campaign.objects.filter(instantly_campaign_id=event.provider_campaign_id)
    with contextlib.suppress(ValueError):  # our own campaign id is accepted too
        campaigns = campaigns | Campaign.objects.filter(pk=uuid.UUID(event.provider_campaign_id))
    campaign = campaigns.first()
    if campaign is None:
        return None
    recipient = recipients.filter(campaign=campaign, email=event.email).first()
    if recipient is None:
        # Instantly sends from its own queue, so its leads may have no Recipient row yet: one is
        # made, in `queued`, for a lead of that campaign only (never for an arbitrary address).
        lead = campaign.leads.filter(email__iexact=event.email).first()
        if lead is None:
            return None
        recipient, _ = Recipient.objects.get_or_create(
            campaign=campaign, email=event.email, defaults={"lead": lead, "status": RecipientStatus.QUEUED}
        )
    return recipient


def webhook_ingest(*, provider: str, event: WebhookEvent) -> dict:
    recipient = _recipient_for(provider, event)
    if recipient is None:
        return {"recorded": False, "reason": "unknown recipient"}
    occurred_at, note = event_time_accept(event.occurred_at)
    link_id = event.link_id
    if link_id is not None and not Link.objects.filter(pk=link_id, campaign_id=recipient.campaign_id).exists():
        link_id = None  # a link of another campaign is not this click's link
    recorded = services.event_record(
        type=event.type,
        recipient_id=recipient.pk,
        occurred_at=occurred_at,
        is_machine=event.is_machine,
        link_id=link_id,
        user_agent=event.user_agent,
        source=provider,
        provider_event_id=event.provider_event_id,
        payload=event.payload,
        with_effects=event.with_effects,
    )
    if recorded is None:
        return {"recorded": False, "reason": "duplicate event"}
    answer = {"recorded": True, "event_id": recorded.pk, "occurred_at": occurred_at}
    if note:
        answer["notes"] = [note]
    return answer
