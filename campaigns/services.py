"""Every change to a campaign goes through here: the API, the admin, tasks and commands alike."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from queue_control.selectors import open_breakers, queue_is_active

from .dispatch import campaigns_kick
from .models import Campaign, Job, Organization
from .pipeline import pipeline_cancel, pipeline_start
from .states import (
    CAMPAIGN_ACTIONS,
    CAMPAIGN_DELETABLE_STATUSES,
    CAMPAIGN_EDITABLE_STATUSES,
    CampaignStatus,
    JobStatus,
    PauseReason,
)
from .transitions import campaign_event_record, campaign_transition

# Fields an operator sets once at creation; everything else about a campaign is content or state.
IMMUTABLE_FIELDS = ("organization",)
# Fields describing state: only services move them, never an update request.
STATE_FIELDS = (
    "status",
    "pause_reason",
    "phase",
    "status_message",
    "status_error",
    "created_at",
    "updated_at",
    "scheduled_at",
    "started_at",
    "paused_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "deleted_at",
    "instantly_campaign_id",
    "file_name",
    "total_records",
)


def campaign_create(*, organization: Organization, actor=None, **fields: Any) -> Campaign:
    campaign = Campaign(organization=organization, **fields)
    campaign.full_clean()
    with transaction.atomic():
        campaign.save()
        campaign_event_record(campaign=campaign, action="campaign.created", to_status=campaign.status, actor=actor)
    return campaign


def campaign_update(*, campaign: Campaign, actor=None, **fields: Any) -> Campaign:
    refused = sorted(set(fields) & set(IMMUTABLE_FIELDS + STATE_FIELDS))
    if refused:
        raise ApplicationError(f"These fields cannot be changed: {', '.join(refused)}.", fields=refused)
    with transaction.atomic():
        # Lock so a concurrent start cannot slip between the status check and the write.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in CAMPAIGN_EDITABLE_STATUSES:
            raise ApplicationError(
                f"Cannot edit a {locked.status} campaign; edits are allowed while "
                f"{', '.join(CAMPAIGN_EDITABLE_STATUSES)}.",
                current_status=locked.status,
            )
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.full_clean()
        locked.save()
        if fields:
            campaign_event_record(
                campaign=locked,
                action="campaign.updated",
                from_status=locked.status,
                to_status=locked.status,
                actor=actor,
                reason="changed " + ", ".join(sorted(fields)),
            )
    return locked


def campaign_delete(*, campaign: Campaign, actor=None) -> None:
    """Soft delete: the row and its history stay, the API stops showing it."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in CAMPAIGN_DELETABLE_STATUSES:
            raise ApplicationError(
                f"Cannot delete a {locked.status} campaign; cancel it first.",
                current_status=locked.status,
            )
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["deleted_at", "updated_at"])
        campaign_event_record(
            campaign=locked, action="campaign.deleted", from_status=locked.status, to_status=locked.status, actor=actor
        )


def _require_queue_open(action: str) -> None:
    blockers = open_breakers()
    if blockers:
        message = "; ".join(f"Cannot {action}: circuit breaker {service} is open" for service in blockers)
        raise ApplicationError(message, open_breakers=blockers)
    if not queue_is_active():
        raise ApplicationError(f"Cannot {action}: the queue is paused; resume the queue first.")


def campaign_start(*, campaign_id, actor=None, actor_label: str = "") -> Campaign:
    _require_queue_open("start")
    with transaction.atomic():
        campaign = campaign_transition(
            campaign_id=campaign_id, to_status=CampaignStatus.RUNNING, actor=actor, actor_label=actor_label
        )
        pipeline_start(campaign=campaign)
    return campaign


def campaign_pause(*, campaign_id, actor=None, reason: str = "") -> Campaign:
    """An operator's pause. Its jobs stay where they are: the claim refuses to start any job of a
    paused campaign, so nothing new begins, and a resume picks up the pending ones."""
    return campaign_transition(
        campaign_id=campaign_id,
        to_status=CampaignStatus.PAUSED,
        actor=actor,
        pause_reason=PauseReason.MANUAL,
        reason=reason or "paused by operator",
    )


def campaign_resume(*, campaign_id, actor=None) -> Campaign:
    """Only a campaign an operator paused resumes on its own; the others wait for the queue resume."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status == CampaignStatus.PAUSED and campaign.pause_reason != PauseReason.MANUAL:
        raise ApplicationError(
            f"Cannot resume: campaign was paused by {campaign.pause_reason}; it resumes with the queue.",
            current_status=campaign.status,
            pause_reason=campaign.pause_reason,
        )
    _require_queue_open("resume")
    with transaction.atomic():
        campaign = campaign_transition(campaign_id=campaign_id, to_status=CampaignStatus.RUNNING, actor=actor)
        # A queue pause that came while it was paused by hand paused its jobs too; the queue
        # resume left them alone (the campaign waited for its operator), so they wake here.
        Job.objects.active().filter(campaign_id=campaign.pk, status=JobStatus.PAUSED).update(
            status=JobStatus.PENDING, updated_at=timezone.now()
        )
        campaigns_kick([campaign.pk])
    return campaign


def campaign_cancel(*, campaign_id, actor=None, reason: str = "") -> Campaign:
    with transaction.atomic():
        campaign = campaign_transition(
            campaign_id=campaign_id, to_status=CampaignStatus.CANCELLED, actor=actor, reason=reason
        )
        pipeline_cancel(campaign=campaign)
    return campaign


def campaign_schedule(*, campaign_id, actor=None, scheduled_at=None) -> Campaign:
    """Launch later: beat's launch_scheduled_campaigns starts it once scheduled_at has passed."""
    launch_at = scheduled_at or timezone.now()
    with transaction.atomic():
        campaign = campaign_transition(
            campaign_id=campaign_id,
            to_status=CampaignStatus.SCHEDULED,
            actor=actor,
            reason=f"launch at {launch_at.isoformat()}",
        )
        Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=launch_at)
        campaign.scheduled_at = launch_at
    return campaign


def campaign_unschedule(*, campaign_id, actor=None) -> Campaign:
    return campaign_transition(campaign_id=campaign_id, to_status=CampaignStatus.DRAFT, actor=actor)


ACTION_SERVICES = {
    "start": campaign_start,
    "pause": campaign_pause,
    "resume": campaign_resume,
    "cancel": campaign_cancel,
    "schedule": campaign_schedule,
    "unschedule": campaign_unschedule,
}
assert set(ACTION_SERVICES) == set(CAMPAIGN_ACTIONS)
