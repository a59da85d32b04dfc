"""Sending through an organization's mailboxes: who a message is from, the SMTP connection, the
permit's caps, and the rotation that gives each recipient its mailbox at launch.

Every step to a recipient goes through `message_sender` and `mailbox_connection`, so a
follow-up goes from the very mailbox that sent step 1. A recipient without a mailbox (its
campaign has none) is sent as before: the campaign's from address, the settings' SMTP.
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Mailbox
from campaigns.secrets import secret_decrypt
from campaigns_project.redis import rkey
from integrations.ratelimit import TokenBucket
from queue_control.guard import Cap

from .models import Recipient
from .states import RecipientStatus

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
DAILY_CAP = "the mailbox's daily cap"


def message_sender(*, campaign: Campaign, mailbox: Mailbox | None) -> tuple[str, str]:
    """(from name, from address) of a message: the mailbox's, else the campaign's."""
    if mailbox is not None:
        return " ".join((mailbox.from_name or campaign.from_name).split()), mailbox.from_email
    return " ".join(campaign.from_name.split()), campaign.from_email or settings.DEFAULT_FROM_EMAIL


def mailbox_connection(mailbox: Mailbox | None):
    """An unopened connection: the mailbox's own SMTP server and login, or the settings' backend."""
    if mailbox is None:
        return get_connection()
    return get_connection(
        SMTP_BACKEND,
        host=mailbox.smtp_host,
        port=mailbox.smtp_port,
        username=mailbox.smtp_username or None,
        password=secret_decrypt(mailbox.smtp_password_encrypted) or None,
        use_tls=mailbox.smtp_security == Mailbox.SmtpSecurity.STARTTLS,
        use_ssl=mailbox.smtp_security == Mailbox.SmtpSecurity.TLS,
        timeout=settings.EMAIL_TIMEOUT,
    )


def mailbox_daily_cap(mailbox: Mailbox, *, now: datetime | None = None) -> Cap:
    """Today's (UTC) cap as a counter the permit counts in Redis: every worker shares it."""
    now = now or timezone.now()
    day = now.astimezone(UTC).date()
    return Cap(
        key=rkey("mailbox", str(mailbox.pk), "sent", day.isoformat()),
        limit=mailbox.cap_on(day),
        ttl_seconds=2 * 86_400,
        label=DAILY_CAP,
    )


def mailbox_gap_bucket(mailbox: Mailbox) -> TokenBucket | None:
    """One send per min_gap_seconds, across every worker (a bucket of one token)."""
    if not mailbox.min_gap_seconds:
        return None
    return TokenBucket(f"mailbox-gap:{mailbox.pk}", 1.0 / mailbox.min_gap_seconds, 1)


def seconds_to_next_day(now: datetime | None = None) -> float:
    now = (now or timezone.now()).astimezone(UTC)
    tomorrow = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return (tomorrow - now).total_seconds()


def _spread(recipients, mailbox_ids: list[int]) -> int:
    """Give `recipients` these mailboxes in turn (by id, round robin: one UPDATE per mailbox)."""
    count = len(mailbox_ids)
    return sum(
        recipients.alias(turn=F("id") % count).filter(turn=turn).update(mailbox_id=mailbox_id)
        for turn, mailbox_id in enumerate(mailbox_ids)
    )


def recipients_rotate(*, campaign: Campaign) -> int:
    """Give each of the campaign's recipients without a mailbox one of its active mailboxes that
    is not paused (all its active ones if every one is), in turn. Recipients that have one keep
    it. Returns how many were given one."""
    active = campaign.mailboxes.filter(active=True).order_by("pk")
    mailbox_ids = list(active.filter(pause_kind="").values_list("pk", flat=True)) or list(
        active.values_list("pk", flat=True)
    )
    if not mailbox_ids:
        return 0
    return _spread(Recipient.objects.filter(campaign_id=campaign.pk, mailbox__isnull=True), mailbox_ids)


def recipients_hand_off(*, mailbox: Mailbox, campaign_ids) -> int:
    """`mailbox` is paused and these campaigns go on from their other mailboxes: its recipients
    that nothing was sent to yet (step 1, pending) move to those, in turn; the ones whose thread
    it holds (a follow-up goes from the mailbox that sent step 1) wait for its resume. Registered
    as a campaigns.mailboxes.MAILBOX_HANDOFFS hook; called again by a send batch that gives back
    recipients it had claimed. Returns how many moved."""
    moved = 0
    for campaign in Campaign.objects.filter(pk__in=list(campaign_ids)).order_by("pk"):
        targets = list(
            campaign.mailboxes.filter(active=True, pause_kind="")
            .exclude(pk=mailbox.pk)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if targets:
            unsent = Recipient.objects.filter(
                campaign_id=campaign.pk,
                mailbox_id=mailbox.pk,
                status=RecipientStatus.PENDING,
                sent_at__isnull=True,
                sequence_step__lte=1,
            )
            moved += _spread(unsent, targets)
    return moved


def paused_mailbox_ids(*, campaign: Campaign) -> list[int]:
    """The paused mailboxes the campaign's recipients may be bound to (its organization's, so a
    mailbox taken off the campaign since counts too): their recipients wait, the claim skips them."""
    return list(
        Mailbox.objects.filter(organization_id=campaign.organization_id)
        .exclude(pause_kind="")
        .values_list("pk", flat=True)
    )
