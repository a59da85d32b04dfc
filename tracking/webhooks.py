"""Provider webhooks: signature check, one parser per provider, and the ingest into EmailEvent.

Every provider signs the raw body with HMAC-SHA256 and settings.WEBHOOK_SECRET, sent as
`X-Signature: sha256=<hex>`. A parser turns a payload into a `WebhookEvent`; `webhook_ingest`
finds the recipient and records the event through services.event_record, whose unique
(source, provider_event_id) constraint makes a replayed event a no-op.
"""

import contextlib
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign

from . import services
from .models import Link, Recipient
from .states import EventType, RecipientStatus

SIGNATURE_HEADER = "X-Signature"


def signature_valid(*, body: bytes, header: str) -> bool:
    """Constant-time comparison; no secret configured means nothing is accepted."""
    secret = settings.WEBHOOK_SECRET
    scheme, _, digest = header.strip().partition("=")
    if not secret or scheme.lower() != "sha256" or not digest:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


def sign(body: bytes) -> str:
    """The header value a sender puts in X-Signature (used by tests and by our own tools)."""
    return "sha256=" + hmac.new(settings.WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


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
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationError({name: ["Expected an ISO 8601 date-time with a time zone."]})
    return parsed


# --- generic: our own signed format -------------------------------------------------------------

GENERIC_TYPE_ALIASES = {"complaint": EventType.COMPLAIN, "unsubscribed": EventType.UNSUBSCRIBE, "bounced": "bounce"}


def parse_generic(data: dict) -> WebhookEvent:
    """{event_id, type, message_id | token, occurred_at?, link_id?, user_agent?, is_machine?,
    bounce_type? (hard | soft: a soft bounce is recorded without suppressing)}."""
    errors = {}
    event_id = _text(data, "event_id")
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
    link_id = event.link_id
    if link_id is not None and not Link.objects.filter(pk=link_id, campaign_id=recipient.campaign_id).exists():
        link_id = None  # a link of another campaign is not this click's link
    recorded = services.event_record(
        type=event.type,
        recipient_id=recipient.pk,
        occurred_at=event.occurred_at,
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
    return {"recorded": True, "event_id": recorded.pk}
