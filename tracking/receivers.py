"""What the live view and the outgoing webhooks hear from the apps below.

Every history row is news: a saved CampaignEvent (status moves, phase changes: campaigns'
transitions and pipeline write them) marks its campaign changed and emits its webhook event; a
saved QueueEvent (queue paused or resumed, breaker opened or reset: queue_control's services
write them) marks the queue changed and emits its platform event; the queue cascade, which
writes its history in one INSERT … SELECT without save(), says so through
campaigns_project.live.campaign_history_inserted. All of it inside the transaction that records
the fact, so the outbox rows commit or roll back with it. Connected in TrackingConfig.ready.
"""

from functools import lru_cache

from django.db.models.signals import post_save
from django.dispatch import receiver

from campaigns.models import Campaign, CampaignEvent
from campaigns.states import CampaignStatus, pause_fields
from campaigns_project import live
from queue_control.models import QueueEvent

from .models import Link, Recipient
from .models_outbound import WebhookEventType
from .outbound import event_emit, events_emit, subscribers
from .states import EventType

STATUS_ACTIONS = {f"campaign.{status}" for status in CampaignStatus.values}
QUEUE_EVENT_TYPES: dict[str, str] = {
    QueueEvent.Kind.QUEUE_PAUSED: WebhookEventType.QUEUE_PAUSED,
    QueueEvent.Kind.QUEUE_RESUMED: WebhookEventType.QUEUE_RESUMED,
    QueueEvent.Kind.BREAKER_OPENED: WebhookEventType.BREAKER_OPENED,
    QueueEvent.Kind.BREAKER_RESET: WebhookEventType.BREAKER_RESET,
}
EMAIL_EVENT_TYPES: dict[str, str] = {
    EventType.OPEN: WebhookEventType.EMAIL_OPENED,
    EventType.CLICK: WebhookEventType.EMAIL_CLICKED,
    EventType.REPLY: WebhookEventType.EMAIL_REPLIED,
    EventType.AUTO_REPLY: WebhookEventType.EMAIL_AUTO_REPLIED,
    EventType.BOUNCE: WebhookEventType.EMAIL_BOUNCED,
    EventType.UNSUBSCRIBE: WebhookEventType.EMAIL_UNSUBSCRIBED,
    EventType.COMPLAIN: WebhookEventType.EMAIL_COMPLAINED,
}


def _campaign_data(campaign: Campaign) -> dict:
    return {
        "id": str(campaign.pk),
        "name": campaign.name,
        "status": campaign.status,
        "phase": campaign.phase or None,
        "pause_cause": campaign.pause_cause or None,
        "pause": pause_fields(campaign),
    }


@receiver(post_save, sender=CampaignEvent, dispatch_uid="tracking.receivers.campaign_event")
def on_campaign_event(sender, instance: CampaignEvent, created: bool, **kwargs) -> None:
    if not created:
        return
    live.campaign_changed(instance.campaign_id)
    if instance.action in STATUS_ACTIONS:
        campaign = instance.campaign
        event_emit(
            type=WebhookEventType.CAMPAIGN_STATUS_CHANGED,
            organization_id=campaign.organization_id,
            data={
                "campaign": _campaign_data(campaign),
                "from_status": instance.from_status or None,
                "to_status": instance.to_status,
                "reason": instance.reason,
                "actor": instance.actor_label,
            },
        )
    elif instance.action == "campaign.phase_changed":
        campaign = instance.campaign
        from_phase, _, to_phase = instance.reason.partition(" → ")  # written by pipeline._advance_locked
        event_emit(
            type=WebhookEventType.CAMPAIGN_PHASE_CHANGED,
            organization_id=campaign.organization_id,
            data={
                "campaign": {**_campaign_data(campaign), "phase": to_phase},
                "from_phase": from_phase,
                "to_phase": to_phase,
            },
        )


@receiver(live.campaign_history_inserted, dispatch_uid="tracking.receivers.campaign_history_bulk")
def on_campaign_history_bulk(sender, *, campaign_ids, action, from_status, to_status, reason, **kwargs) -> None:
    if action not in STATUS_ACTIONS or not subscribers_any(WebhookEventType.CAMPAIGN_STATUS_CHANGED):
        return
    campaigns = Campaign.objects.filter(pk__in=campaign_ids).order_by("pk")
    events_emit(
        type=WebhookEventType.CAMPAIGN_STATUS_CHANGED,
        items=[
            (
                campaign.organization_id,
                {
                    "campaign": _campaign_data(campaign),
                    "from_status": from_status,
                    "to_status": to_status,
                    "reason": reason,
                    "actor": "queue",
                },
            )
            for campaign in campaigns
        ],
    )


@receiver(post_save, sender=QueueEvent, dispatch_uid="tracking.receivers.queue_event")
def on_queue_event(sender, instance: QueueEvent, created: bool, **kwargs) -> None:
    if not created:
        return
    live.queue_changed()
    kind = QUEUE_EVENT_TYPES.get(instance.kind)
    if kind is not None:
        event_emit(
            type=kind,
            organization_id=None,  # the queue is the platform's: every organization may subscribe
            data={
                "service": instance.service or None,
                "reason": instance.reason,
                "actor": instance.actor_label,
                "at": instance.created_at.isoformat(),
            },
        )


def subscribers_any(event_type: str) -> bool:
    return bool(subscribers(event_type, None))


# --- email events (called by tracking.services) -------------------------------------------------


@lru_cache(maxsize=4096)
def _organization_of(campaign_id) -> int | None:
    """A campaign's organization never changes: asked once per process and campaign."""
    return Campaign.objects.filter(pk=campaign_id).values_list("organization_id", flat=True).first()


def _webhook_type(type: str) -> str | None:
    return WebhookEventType.EMAIL_SENT if type == "sent" else EMAIL_EVENT_TYPES.get(type)


def email_events_wanted(*, type: str, campaign_id) -> bool:
    """Whether the campaign's organization subscribed to this email event (cached lookups only)."""
    webhook_type = _webhook_type(type)
    if webhook_type is None:
        return False
    organization_id = _organization_of(campaign_id)
    return organization_id is not None and bool(subscribers(webhook_type, organization_id))


def email_events_emit(*, type: str, campaign_id, events: list[dict]) -> int:
    """Webhook events for email events of one campaign (type: "sent" or an EventType): each a
    dict with recipient_id, occurred_at, and optionally is_machine, link_id, source, message_id.
    Costs nothing (two dictionary lookups) unless the campaign's organization subscribed."""
    if not events or not email_events_wanted(type=type, campaign_id=campaign_id):
        return 0
    webhook_type = _webhook_type(type)
    organization_id = _organization_of(campaign_id)
    if webhook_type is None or organization_id is None:  # email_events_wanted saw both already
        return 0
    emails = dict(
        Recipient.objects.filter(pk__in=[event["recipient_id"] for event in events]).values_list("pk", "email")
    )
    link_ids = {event["link_id"] for event in events if event.get("link_id")}
    urls = dict(Link.objects.filter(pk__in=link_ids).values_list("pk", "url")) if link_ids else {}
    items = []
    for event in events:
        data = {
            "campaign": str(campaign_id),
            "recipient": {"id": event["recipient_id"], "email": emails.get(event["recipient_id"], "")},
            "occurred_at": event["occurred_at"].isoformat(),
        }
        if webhook_type != WebhookEventType.EMAIL_SENT:
            data["is_machine"] = bool(event.get("is_machine"))
            data["source"] = event.get("source", "tracking")
        if event.get("message_id"):
            data["message_id"] = event["message_id"]
        if event.get("link_id"):
            data["url"] = urls.get(event["link_id"])
        items.append((organization_id, data))
    return events_emit(type=webhook_type, items=items)
