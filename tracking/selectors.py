"""Every read of the tracking app, shared by the API, the admin and the benchmarks."""

from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour
from django.http import Http404
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import NOT_SYNCED_YET, campaign_list_for_user, instantly_analytics_get

from .counters import counters_read
from .models import EmailEvent, Recipient
from .states import RecipientStatus

# A recipient in `sending` for longer than this was most likely cut off mid-hand-over (a killed
# worker, a lost connection): the admin reports it for an operator to decide.
STUCK_SENDING_AFTER = timedelta(minutes=10)
ANALYTICS_HOURS = 48
ANALYTICS_DAYS = 30
TOP_LINKS = 10


def recipient_list(*, campaign: Campaign, statuses: list[str] | None = None, search: str = "") -> QuerySet[Recipient]:
    recipients = Recipient.objects.filter(campaign=campaign)
    if statuses:
        recipients = recipients.filter(status__in=statuses)
    if search:
        recipients = recipients.filter(email__icontains=search.strip())
    return recipients.order_by("id")


def recipient_get_for_user(*, user, recipient_id) -> Recipient:
    """The recipient, or Http404 when unknown, malformed, or in a campaign the user cannot see."""
    try:
        pk = int(str(recipient_id))
    except ValueError:
        raise Http404("No recipient with that id.")
    try:
        return Recipient.objects.select_related("campaign").get(pk=pk, campaign__in=campaign_list_for_user(user=user))
    except Recipient.DoesNotExist:
        raise Http404("No recipient with that id.")


def recipient_events(*, recipient: Recipient) -> QuerySet[EmailEvent]:
    return EmailEvent.objects.filter(recipient=recipient).select_related("link").order_by("-occurred_at", "-id")


def recipients_stuck_in_sending(*, now: datetime | None = None) -> QuerySet[Recipient]:
    cutoff = (now or timezone.now()) - STUCK_SENDING_AFTER
    return Recipient.objects.filter(status=RecipientStatus.SENDING, claimed_at__lt=cutoff)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def campaign_stats(*, campaign: Campaign) -> dict:
    """Sent, delivered, opens and clicks (unique and total, human and raw), bounces, complaints,
    unsubscribes, replies, auto-replies and rates, from the campaign's counters: one query, whatever
    the campaign's size (see tracking/counters.py for why counters)."""
    c = counters_read(campaign_id=campaign.pk)
    sent = c.get("recipients.sent", 0)
    bounces = c.get("recipients.bounced", 0)
    # SMTP tells us about failures, not deliveries: what was sent and did not bounce was delivered.
    delivered = max(sent - bounces, 0)

    def engagement(kind: str) -> dict:
        return {
            "unique": c.get(f"unique.{kind}.human", 0),
            "total": c.get(f"event.{kind}.human", 0),
            "unique_raw": c.get(f"unique.{kind}", 0),
            "total_raw": c.get(f"event.{kind}", 0),
        }

    opens, clicks = engagement("open"), engagement("click")
    complaints = c.get("recipients.complained", 0)
    unsubscribes = c.get("recipients.unsubscribed", 0)
    replies = c.get("event.reply", 0)
    return {
        "sent": sent,
        "delivered": delivered,
        "failed": c.get("recipients.failed", 0),
        "opens": opens,
        "clicks": clicks,
        "bounces": bounces,
        "complaints": complaints,
        "unsubscribes": unsubscribes,
        "replies": replies,
        "auto_replies": c.get("event.auto_reply", 0),  # out-of-office and the like: not in the reply rate
        "rates": {
            "delivery": _rate(delivered, sent),
            "bounce": _rate(bounces, sent),
            "open": _rate(opens["unique"], delivered),
            "open_raw": _rate(opens["unique_raw"], delivered),
            "click": _rate(clicks["unique"], delivered),
            "click_raw": _rate(clicks["unique_raw"], delivered),
            "reply": _rate(replies, delivered),
            "unsubscribe": _rate(unsubscribes, delivered),
            "complaint": _rate(complaints, delivered),
        },
    }


def _buckets(campaign: Campaign, trunc, since: datetime) -> list[dict]:
    rows = (
        EmailEvent.objects.filter(campaign=campaign, occurred_at__gte=since)
        .annotate(bucket=trunc("occurred_at"))
        .values("bucket", "type")
        .annotate(total=Count("id"), human=Count("id", filter=Q(is_machine=False)))
        .order_by("bucket", "type")
    )
    buckets: dict[datetime, dict] = {}
    for row in rows:
        bucket = buckets.setdefault(row["bucket"], {"bucket": row["bucket"].isoformat()})
        bucket[row["type"]] = row["total"]
        bucket[f"{row['type']}_human"] = row["human"]
    return list(buckets.values())


def campaign_top_links(*, campaign: Campaign, limit: int = TOP_LINKS) -> list[dict]:
    rows = (
        EmailEvent.objects.filter(campaign=campaign, type="click", link__isnull=False)
        .values("link_id", "link__url")
        .annotate(
            clicks=Count("id"),
            human_clicks=Count("id", filter=Q(is_machine=False)),
            unique_clickers=Count("recipient", distinct=True, filter=Q(is_machine=False)),
        )
        .order_by("-human_clicks", "-clicks", "link_id")[:limit]
    )
    return [
        {
            "link_id": row["link_id"],
            "url": row["link__url"],
            "clicks": row["clicks"],
            "human_clicks": row["human_clicks"],
            "unique_clickers": row["unique_clickers"],
        }
        for row in rows
    ]


def instantly_analytics(*, campaign: Campaign) -> dict:
    """Instantly's own figures for a campaign on that channel, as the periodic sync stored them
    (`instantly_synced_at`); why they are missing or stale is an `instantly_error` field. Never a
    call to Instantly: the sync is the only caller, through the breaker."""
    if not campaign.instantly_campaign_id:
        return {"instantly_error": "The campaign has not been pushed to Instantly yet."}
    stored = instantly_analytics_get(campaign=campaign)
    if stored is None:
        return {"instantly_error": NOT_SYNCED_YET}
    result: dict = {"instantly_synced_at": stored.synced_at}
    if stored.figures is not None:
        result["instantly"] = stored.figures
    if stored.error:
        result["instantly_error"] = stored.error
    return result


def campaign_analytics(*, campaign: Campaign, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    result = {
        "hourly": _buckets(campaign, TruncHour, now - timedelta(hours=ANALYTICS_HOURS)),
        "daily": _buckets(campaign, TruncDay, now - timedelta(days=ANALYTICS_DAYS)),
        "top_links": campaign_top_links(campaign=campaign),
    }
    if campaign.channel == Campaign.Channel.INSTANTLY:
        result.update(instantly_analytics(campaign=campaign))
    return result


def recipient_for_message_ids(
    *, message_ids: list[str], organization_id: int | None = None
) -> tuple[Recipient, str] | None:
    """The recipient one of our sent Message-IDs belongs to, and that Message-ID, trying
    `message_ids` in order (a reply's In-Reply-To first, then its References newest first);
    only among `organization_id`'s campaigns when given (an organization's own mailbox).

    The one place a Message-ID we sent is looked up (inbound mail, the IMAP poller): the
    recipient's last message (`Recipient.message_id`) and every sequence step's (`StepSend`), a
    reply to step 1 after step 2 went out included. Two queries; ids are compared with and without
    their angle brackets, as providers quote them both ways."""
    from .models_sequences import StepSend

    bare = list(dict.fromkeys(mid.strip().strip("<>").strip() for mid in message_ids if mid and mid.strip("<> ")))
    if not bare:
        return None
    forms = [form for mid in bare for form in (f"<{mid}>", mid)]
    recipients = Recipient.objects.select_related("campaign").filter(message_id__in=forms)
    steps = StepSend.objects.select_related("recipient__campaign").filter(message_id__in=forms)
    if organization_id is not None:
        recipients = recipients.filter(campaign__organization_id=organization_id)
        steps = steps.filter(recipient__campaign__organization_id=organization_id)
    found = {step.message_id.strip("<>"): step.recipient for step in steps}
    found.update({recipient.message_id.strip("<>"): recipient for recipient in recipients})
    for mid in bare:
        if mid in found:
            return found[mid], f"<{mid}>"
    return None
