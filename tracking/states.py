"""Recipient and event vocabularies, and the recipient state machine, written once as data."""

from django.db import models


class RecipientStatus(models.TextChoices):
    PENDING = "pending"  # waiting for a send job to claim it
    QUEUED = "queued"  # reserved for channels that hand recipients to a provider queue
    SENDING = "sending"  # claimed by a send job; SMTP may or may not have accepted it
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


class EventType(models.TextChoices):
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    BOUNCE = "bounce"
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    FORWARD = "forward"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAIN = "complain"


class SuppressionReason(models.TextChoices):
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    MANUAL = "manual"


R = RecipientStatus
RECIPIENT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    R.PENDING: (R.SENDING, R.FAILED, R.BOUNCED, R.UNSUBSCRIBED, R.COMPLAINED),
    R.QUEUED: (R.PENDING, R.SENDING, R.FAILED, R.BOUNCED, R.UNSUBSCRIBED, R.COMPLAINED),
    # -> pending: a 4xx or a lost connection before this recipient was handed to SMTP.
    # A bounce may arrive for a recipient whose "sent" mark was lost with its worker.
    R.SENDING: (R.SENT, R.PENDING, R.FAILED, R.BOUNCED, R.UNSUBSCRIBED, R.COMPLAINED),
    # -> pending: armed for the next step of its sequence (tracking/sequences.py).
    R.SENT: (R.PENDING, R.BOUNCED, R.UNSUBSCRIBED, R.COMPLAINED),
    R.UNSUBSCRIBED: (R.COMPLAINED,),  # a complaint is the stronger fact
    R.FAILED: (),
    R.BOUNCED: (),
    R.COMPLAINED: (),
}

# Recipients in these statuses may still be removed from a campaign: nothing was sent to them.
RECIPIENT_DELETABLE_STATUSES = (R.PENDING,)

# The recipient status an event moves a recipient to, and the suppression it adds.
EVENT_EFFECTS: dict[str, tuple[str, str]] = {
    EventType.BOUNCE: (R.BOUNCED, SuppressionReason.BOUNCED),
    EventType.COMPLAIN: (R.COMPLAINED, SuppressionReason.COMPLAINED),
    EventType.UNSUBSCRIBE: (R.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
}


def recipient_sources_for(target: str) -> tuple[str, ...]:
    """The statuses a recipient may move to `target` from (for conditional, set-based UPDATEs)."""
    return tuple(source for source, targets in RECIPIENT_TRANSITIONS.items() if target in targets)
