"""Every change to a campaign goes through here: the API, the admin, tasks and commands alike."""

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from queue_control.selectors import open_breakers, queue_is_active_held

from .dispatch import campaigns_kick
from .models import CAMPAIGN_STATE_FIELDS, Campaign, Job, Organization
from .pipeline import pipeline_cancel, pipeline_start
from .states import (
    CAMPAIGN_ACTIONS,
    CAMPAIGN_DELETABLE_STATUSES,
    CAMPAIGN_EDITABLE_STATUSES,
    JobStatus,
    PauseCause,
    PauseKind,
)
from .transitions import campaign_act, campaign_event_record

logger = logging.getLogger(__name__)

# Fields an operator sets once at creation; everything else about a campaign is content or state.
IMMUTABLE_FIELDS = ("organization",)
STATE_FIELDS = CAMPAIGN_STATE_FIELDS  # only services move them, never an update request


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


ORGANIZATION_EDITABLE_FIELDS = ("name", "postal_address")


def organization_update(*, organization: Organization, actor=None, **fields: Any) -> Organization:
    """Change an organization's name or postal address (the footer of every message it sends).
    The API and the admin check who may (owners, staff); this checks what."""
    refused = sorted(set(fields) - set(ORGANIZATION_EDITABLE_FIELDS))
    if refused:
        raise ApplicationError(f"These fields cannot be changed: {', '.join(refused)}.", fields=refused)
    for name, value in fields.items():
        setattr(organization, name, value.strip() if name == "postal_address" else value)
    organization.full_clean()
    if fields:
        organization.save(update_fields=list(fields))
        logger.info("Organization %s: %s changed by %s", organization.slug, ", ".join(sorted(fields)), actor)
    return organization


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
    if not queue_is_active_held():  # held to the commit: a queue pause cannot slip in between
        raise ApplicationError(f"Cannot {action}: the queue is paused; resume the queue first.")


def campaign_missing_for_start(*, campaign: Campaign) -> list[str]:
    """What a campaign lacks to run, in an operator's words; empty when it can start. Every
    campaign needs a lead source; the smtp channel also needs a sender and both templates (for
    Instantly, the sender and the sequence are set up in Instantly)."""
    missing = []
    if not campaign.search_url and not campaign.file_name:
        missing.append("a lead source (a search URL or an uploaded CSV)")
    if campaign.channel == Campaign.Channel.SMTP:
        # With mailboxes, each recipient is sent from its mailbox's address (at least one active).
        mailboxes = list(campaign.mailboxes.values_list("active", flat=True)) if campaign.pk else []
        if mailboxes and not any(mailboxes):
            missing.append("an active mailbox (every mailbox of the campaign is inactive)")
        if not campaign.from_email and not mailboxes:
            missing.append("a sender address (from_email)")
        if not campaign.subject_template.strip():
            missing.append("a subject (subject_template)")
        if not campaign.body_template.strip():
            missing.append("a body (body_template)")
        if not campaign.organization.postal_address.strip():
            # CAN-SPAM: every message's footer carries it (tracking.rendering.add_tracking).
            missing.append("the organization's postal address (PATCH /api/v1/organizations/{slug}/)")
    return missing


def _require_complete(action: str):
    def check(campaign: Campaign) -> None:
        missing = campaign_missing_for_start(campaign=campaign)
        if missing:
            raise ApplicationError(f"Cannot {action}: the campaign is missing {'; '.join(missing)}.", missing=missing)

    return check


def _start_check(campaign: Campaign) -> None:
    _require_complete("start")(campaign)
    _require_queue_open("start")


def _resume_check(campaign: Campaign, *, acknowledge: bool = False, actor=None) -> None:
    # A campaign an operator paused resumes on its own; one paused for deliverability too, by an
    # operator who acknowledges the figure while it is still above its threshold; one paused by a
    # mailbox waits for that mailbox's resume; the others wait for the queue resume.
    if campaign.pause_kind == PauseKind.DELIVERABILITY and campaign.pause_mailbox_id is None:
        _require_queue_open("resume")
        for check in RESUME_GUARDS.get(PauseKind.DELIVERABILITY, ()):
            check(campaign=campaign, acknowledge=acknowledge, actor=actor)
        return
    if campaign.pause_kind != PauseKind.MANUAL:
        waits_for = "its mailbox's resume" if campaign.pause_mailbox_id else "the queue"
        raise ApplicationError(
            f"Cannot resume: campaign was paused by {campaign.pause_cause or 'the system'}; "
            f"it resumes with {waits_for}.",
            current_status=campaign.status,
            pause_reason=campaign.pause_cause,
            pause_kind=campaign.pause_kind,
        )
    _require_queue_open("resume")


# Further conditions of a resume per pause kind, registered by the apps above (tracking's
# deliverability guard: refused while the figure is still above its threshold, unless
# acknowledged). Each raises ApplicationError to refuse.
RESUME_GUARDS: dict[str, list] = {}


# The conditions besides the status that each action's service checks (under the row lock).
_CHECKS = {"start": _start_check, "resume": _resume_check, "schedule": _require_complete("schedule")}


def campaign_action_refusal(*, campaign: Campaign, action: str, acknowledge: bool = False) -> str:
    """Why `action` would be refused now for a campaign whose status allows it (queue paused,
    breaker open, paused by the system, content missing); empty when it would go through. The
    admin shows this next to a disabled button; the service checks the same under its lock."""
    check = _CHECKS.get(action)
    if check is None:
        return ""
    try:
        if acknowledge:  # an acknowledgement is recorded by the check: here it is only a question
            with transaction.atomic():
                _resume_check(campaign, acknowledge=True)
                transaction.set_rollback(True)
        else:
            check(campaign)
    except ApplicationError as exc:
        return exc.message
    return ""


def campaign_start(*, campaign_id, actor=None, actor_label: str = "", reason: str = "") -> Campaign:
    with transaction.atomic():
        campaign = campaign_act(
            campaign_id=campaign_id,
            action="start",
            actor=actor,
            actor_label=actor_label,
            reason=reason,
            check=_CHECKS["start"],
        )
        pipeline_start(campaign=campaign)
    return campaign


def campaign_pause(*, campaign_id, actor=None, reason: str = "") -> Campaign:
    """An operator's pause. Its jobs stay where they are: the claim refuses to start any job of a
    paused campaign, so nothing new begins, and a resume picks up the pending ones."""
    return campaign_act(
        campaign_id=campaign_id,
        action="pause",
        actor=actor,
        pause=PauseCause(PauseKind.MANUAL),
        reason=reason or "paused by operator",
    )


def campaign_resume(*, campaign_id, actor=None, reason: str = "", acknowledge: bool = False) -> Campaign:
    """Only a campaign an operator paused (or the deliverability guard, with `acknowledge` while
    its figure is still above the threshold) resumes on its own; the others wait for the queue
    resume or their mailbox's."""
    with transaction.atomic():
        campaign = campaign_act(
            campaign_id=campaign_id,
            action="resume",
            actor=actor,
            reason=(reason or "") + (" (deliverability figure acknowledged)" if acknowledge else ""),
            check=lambda campaign: _resume_check(campaign, acknowledge=acknowledge, actor=actor),
        )
        # A queue pause that came while it was paused by hand paused its jobs too; the queue
        # resume left them alone (the campaign waited for its operator), so they wake here.
        Job.objects.active().filter(campaign_id=campaign.pk, status=JobStatus.PAUSED).update(
            status=JobStatus.PENDING, updated_at=timezone.now()
        )
        campaigns_kick([campaign.pk])
    return campaign


def campaign_cancel(*, campaign_id, actor=None, reason: str = "") -> Campaign:
    with transaction.atomic():
        campaign = campaign_act(campaign_id=campaign_id, action="cancel", actor=actor, reason=reason)
        pipeline_cancel(campaign=campaign)
    return campaign


def campaign_schedule(*, campaign_id, actor=None, scheduled_at=None, reason: str = "") -> Campaign:
    """Launch later: beat's launch_scheduled_campaigns starts it once scheduled_at has passed."""
    launch_at = scheduled_at or timezone.now()
    with transaction.atomic():
        campaign = campaign_act(
            campaign_id=campaign_id,
            action="schedule",
            actor=actor,
            reason=f"launch at {launch_at.isoformat()}" + (f"; {reason}" if reason else ""),
            check=_CHECKS["schedule"],
        )
        Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=launch_at)
        campaign.scheduled_at = launch_at
    return campaign


def campaign_unschedule(*, campaign_id, actor=None, reason: str = "") -> Campaign:
    return campaign_act(campaign_id=campaign_id, action="unschedule", actor=actor, reason=reason)


# Each action's service, as the action table names it: the API, the admin buttons and the
# commands dispatch through this.
ACTION_SERVICES = {name: globals()[action.service] for name, action in CAMPAIGN_ACTIONS.items()}
