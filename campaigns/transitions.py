"""The state moves of a campaign: one locked transition along the state table, and the history
row every change writes. Below the pipeline and the services, which both move campaigns through
here; nothing here starts work."""

from django.db import transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError

from .models import Campaign, CampaignEvent
from .states import CampaignStatus, campaign_allowed, campaign_can

# scheduled_at is not here: it is the launch time the operator chose, set by campaign_schedule.
_TIMESTAMP_FOR = {
    CampaignStatus.RUNNING: "started_at",
    CampaignStatus.PAUSED: "paused_at",
    CampaignStatus.COMPLETED: "completed_at",
    CampaignStatus.FAILED: "failed_at",
    CampaignStatus.CANCELLED: "cancelled_at",
}


def _actor_label(actor, actor_label: str) -> str:
    if actor_label:
        return actor_label
    return actor.get_username() if actor is not None else "system"


def _refuse(campaign: Campaign, target: str) -> ApplicationError:
    allowed = list(campaign_allowed(campaign.status))
    return ApplicationError(
        f"Cannot move campaign from {campaign.status} to {target}. "
        f"Allowed from {campaign.status}: {', '.join(allowed) or 'none (final)'}.",
        current_status=campaign.status,
        allowed_transitions=allowed,
    )


def campaign_event_record(
    *,
    campaign: Campaign,
    action: str,
    from_status: str = "",
    to_status: str = "",
    actor=None,
    actor_label="",
    reason="",
) -> CampaignEvent:
    return CampaignEvent.objects.create(
        campaign=campaign,
        actor=actor,
        actor_label=_actor_label(actor, actor_label),
        action=action,
        from_status=from_status,
        to_status=to_status,
        reason=reason[:500],
    )


def campaign_transition(
    *,
    campaign_id,
    to_status: str,
    actor=None,
    actor_label: str = "",
    reason: str = "",
    pause_reason: str = "",
    status_message: str | None = None,
    status_error: str | None = None,
) -> Campaign:
    """Move a campaign along the state machine, or raise ApplicationError naming what is allowed."""
    with transaction.atomic():
        # The row lock serialises concurrent transitions: of two simultaneous starts, the second
        # sees `running` and is refused.
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign_can(campaign.status, to_status):
            raise _refuse(campaign, to_status)
        from_status = campaign.status
        campaign.status = to_status
        if to_status in _TIMESTAMP_FOR:
            setattr(campaign, _TIMESTAMP_FOR[to_status], timezone.now())
        campaign.pause_reason = pause_reason if to_status == CampaignStatus.PAUSED else ""
        if status_message is not None:
            campaign.status_message = status_message[:500]
        if status_error is not None:
            campaign.status_error = status_error
        campaign.save()
        campaign_event_record(
            campaign=campaign,
            action=f"campaign.{to_status}",
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            actor_label=actor_label,
            reason=reason or pause_reason,
        )
    return campaign
