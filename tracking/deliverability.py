"""The deliverability guard (issue 15, point 6).

Per campaign and per mailbox, once at least DELIVERABILITY_MIN_SENDS messages were sent, a
bounce rate above DELIVERABILITY_BOUNCE_RATE (5 %) or a complaint rate above
DELIVERABILITY_COMPLAINT_RATE (0.3 %, the Gmail and Yahoo bulk-sender ceiling) pauses it, with
cause `deliverability` naming the figure. Like the breakers it is a sticky latch: nothing resumes
by itself; an operator's resume is refused while the figure is still above the threshold, unless
the operator acknowledges it; an acknowledgement is recorded (DeliverabilityBaseline) and the
guard then judges the sends made after it.

The figures are read from the recipients (one aggregate over the campaign's or the mailbox's
rows, through their indexes): sends are recipients handed over (sent, or bounced, complained or
unsubscribed since), bounces and complaints the recipients in those statuses. A check runs after
the commit of every recorded bounce or complaint (webhooks, a hard bounce at send time); a
burst of them checks a subject at most once a second (a Redis key), and the last one of the
burst always checks again, so no figure is missed.

Hard bounces and complaints suppress the address at once: tracking/services.event_record does
it in the transaction that records the event (EVENT_EFFECTS), whichever way it arrives.
"""

import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.db.models.signals import post_save
from django.dispatch import receiver

from campaigns.mailboxes import mailbox_pause
from campaigns.models import Campaign, Mailbox
from campaigns.states import CampaignStatus, MailboxPauseKind, PauseCause, PauseKind
from campaigns.transitions import campaign_event_record, campaign_transition
from campaigns_project.errors import ApplicationError
from campaigns_project.redis import get_redis, rkey

from .models import EmailEvent, Recipient
from .models_deliverability import DeliverabilityBaseline
from .states import EventType, RecipientStatus

logger = logging.getLogger(__name__)

HANDED_OVER = (RecipientStatus.SENT, RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED, RecipientStatus.UNSUBSCRIBED)
# The guard's own statuses from which a running campaign's cause is replaced by deliverability:
# paused for the queue, a job or a breaker, it would otherwise resume with them.
_OVERRIDABLE = (PauseKind.QUEUE, PauseKind.JOB, PauseKind.BREAKER)


@dataclass(frozen=True)
class Figures:
    sends: int
    bounces: int
    complaints: int

    def minus(self, baseline: DeliverabilityBaseline | None) -> "Figures":
        if baseline is None:
            return self
        return Figures(
            max(self.sends - baseline.sends, 0),
            max(self.bounces - baseline.bounces, 0),
            max(self.complaints - baseline.complaints, 0),
        )

    def above(self) -> str:
        """The figure above its threshold, in words; empty when none is (or too few sends)."""
        if self.sends < settings.DELIVERABILITY_MIN_SENDS:
            return ""
        bounce_rate, complaint_rate = self.bounces / self.sends, self.complaints / self.sends
        if bounce_rate > settings.DELIVERABILITY_BOUNCE_RATE:
            return (
                f"bounce rate {bounce_rate:.1%} > {settings.DELIVERABILITY_BOUNCE_RATE:.1%} "
                f"({self.bounces} of {self.sends} sends)"
            )
        if complaint_rate > settings.DELIVERABILITY_COMPLAINT_RATE:
            return (
                f"complaint rate {complaint_rate:.2%} > {settings.DELIVERABILITY_COMPLAINT_RATE:.2%} "
                f"({self.complaints} of {self.sends} sends)"
            )
        return ""


def _figures(recipients) -> Figures:
    row = recipients.aggregate(
        sends=Count("pk", filter=Q(status__in=HANDED_OVER)),
        bounces=Count("pk", filter=Q(status=RecipientStatus.BOUNCED)),
        complaints=Count("pk", filter=Q(status=RecipientStatus.COMPLAINED)),
    )
    return Figures(row["sends"], row["bounces"], row["complaints"])


def _baseline(**subject) -> DeliverabilityBaseline | None:
    return DeliverabilityBaseline.objects.filter(**subject).order_by("-id").first()


def campaign_figures(*, campaign_id) -> Figures:
    """The campaign's figures since the last acknowledgement."""
    return _figures(Recipient.objects.filter(campaign_id=campaign_id)).minus(_baseline(campaign_id=campaign_id))


def mailbox_figures(*, mailbox_id: int) -> Figures:
    """The mailbox's figures (every campaign it sent for) since the last acknowledgement."""
    return _figures(Recipient.objects.filter(mailbox_id=mailbox_id)).minus(_baseline(mailbox_id=mailbox_id))


def campaign_guard(*, campaign_id) -> str:
    """Pause the campaign if a figure is above its threshold; returns the figure (empty: none)."""
    figure = campaign_figures(campaign_id=campaign_id).above()
    if not figure:
        return ""
    cause = PauseCause(PauseKind.DELIVERABILITY, figure=figure)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status == CampaignStatus.RUNNING:
            campaign_transition(
                campaign_id=campaign_id,
                to_status=CampaignStatus.PAUSED,
                pause=cause,
                actor_label="deliverability guard",
                reason=f"deliverability: {figure}",
            )
        elif campaign.status == CampaignStatus.PAUSED and campaign.pause_kind in _OVERRIDABLE:
            # It must not resume with the queue while its own figure is above the threshold.
            Campaign.objects.filter(pk=campaign_id).update(**cause.fields())
            campaign_event_record(
                campaign=campaign,
                action="campaign.pause_cause_changed",
                from_status=campaign.status,
                to_status=campaign.status,
                actor_label="deliverability guard",
                reason=f"deliverability: {figure} (was {campaign.pause_cause})",
            )
        else:
            return figure
    logger.warning("Deliverability guard paused campaign %s: %s", campaign_id, figure)
    return figure


def mailbox_guard(*, mailbox_id: int) -> str:
    """Pause the mailbox (and what depends on it) if a figure is above its threshold."""
    figure = mailbox_figures(mailbox_id=mailbox_id).above()
    if figure and not Mailbox.objects.filter(pk=mailbox_id).exclude(pause_kind="").exists():
        mailbox_pause(
            mailbox_id=mailbox_id,
            kind=MailboxPauseKind.DELIVERABILITY,
            figure=figure,
            actor_label="deliverability guard",
        )
        logger.warning("Deliverability guard paused mailbox %s: %s", mailbox_id, figure)
    return figure


def deliverability_check(*, campaign_id, mailbox_id: int | None) -> None:
    campaign_guard(campaign_id=campaign_id)
    if mailbox_id is not None:
        mailbox_guard(mailbox_id=mailbox_id)


def _throttled(subject: str) -> bool:
    """True when this campaign was checked less than DELIVERABILITY_CHECK_SECONDS ago; then one
    trailing check is queued (at most one per interval), so the end of a burst is judged too."""
    interval_ms = int(settings.DELIVERABILITY_CHECK_SECONDS * 1000)
    if interval_ms <= 0:
        return False
    try:
        return not get_redis().set(rkey("deliverability", "checked", subject), "1", nx=True, px=interval_ms)
    except redis.RedisError:
        return False  # check anyway: it only costs a query


def _trailing_due(subject: str) -> bool:
    """The first throttled event of an interval queues the one trailing check."""
    interval_ms = int(settings.DELIVERABILITY_CHECK_SECONDS * 1000)
    try:
        return bool(get_redis().set(rkey("deliverability", "trailing", subject), "1", nx=True, px=interval_ms))
    except redis.RedisError:
        return False


def deliverability_check_soon(*, campaign_id, mailbox_id: int | None) -> None:
    """Check now, unless this campaign was checked less than DELIVERABILITY_CHECK_SECONDS ago;
    then one trailing check is queued for the end of the interval. Never raises: the fact that
    led here (a bounce, a flush of sends) is recorded either way, the next one checks again."""
    if _throttled(str(campaign_id)):
        if _trailing_due(str(campaign_id)):
            from .tasks import check_deliverability

            try:
                check_deliverability.apply_async(
                    args=(str(campaign_id), mailbox_id), countdown=settings.DELIVERABILITY_CHECK_SECONDS
                )
            except Exception:
                logger.exception("Could not queue the trailing deliverability check of campaign %s", campaign_id)
        return
    try:
        deliverability_check(campaign_id=campaign_id, mailbox_id=mailbox_id)
    except Exception:
        logger.exception("Deliverability check of campaign %s failed", campaign_id)


@receiver(post_save, sender=EmailEvent, dispatch_uid="tracking.deliverability.on_event")
def on_event(sender, instance: EmailEvent, created: bool, **kwargs) -> None:
    """A bounce or a complaint, however it arrived (webhook, a hard bounce at send time): check
    its campaign and its mailbox after the commit."""
    if not created or instance.type not in (EventType.BOUNCE, EventType.COMPLAIN):
        return
    campaign_id, recipient_id = instance.campaign_id, instance.recipient_id

    def check() -> None:
        mailbox_id = Recipient.objects.filter(pk=recipient_id).values_list("mailbox_id", flat=True).first()
        deliverability_check_soon(campaign_id=campaign_id, mailbox_id=mailbox_id)

    transaction.on_commit(check)


# --- resume: refused while still above, unless acknowledged ---------------------------------------


def _acknowledge(*, figures: Figures, figure: str, actor=None, **subject) -> None:
    DeliverabilityBaseline.objects.create(
        sends=figures.sends + (b.sends if (b := _baseline(**subject)) else 0),
        bounces=figures.bounces + (b.bounces if b else 0),
        complaints=figures.complaints + (b.complaints if b else 0),
        figure=figure,
        actor=actor,
        **subject,
    )


def campaign_resume_guard(*, campaign: Campaign, acknowledge: bool, actor=None) -> None:
    figures = campaign_figures(campaign_id=campaign.pk)
    figure = figures.above()
    if not figure:
        return
    if not acknowledge:
        raise ApplicationError(
            f"Cannot resume: the campaign's {figure} is still above the threshold; "
            "resume with acknowledge to send anyway.",
            figure=figure,
            acknowledge_required=True,
        )
    _acknowledge(figures=figures, figure=figure, actor=actor, campaign_id=campaign.pk)


def mailbox_resume_guard(*, mailbox: Mailbox, acknowledge: bool, actor=None) -> None:
    figures = mailbox_figures(mailbox_id=mailbox.pk)
    figure = figures.above()
    if not figure:
        return
    if not acknowledge:
        raise ApplicationError(
            f"Cannot resume: the mailbox's {figure} is still above the threshold; "
            "resume with acknowledge to send anyway.",
            figure=figure,
            acknowledge_required=True,
        )
    _acknowledge(figures=figures, figure=figure, actor=actor, mailbox_id=mailbox.pk)
