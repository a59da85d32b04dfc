"""The state moves of a campaign: one locked transition along the state tables, and the history
row every change writes. Below the pipeline and the services, which both move campaigns through
here; nothing here starts work.

Two doors, one lock: `campaign_act` performs an operator's action (its sources come from the
action table, so resume is refused on a draft even though draft -> running is a legal move for
start), `campaign_transition` a system move (completed, failed, paused by a job) along the
transitions table.
"""

from collections.abc import Callable

from django.db import transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from queue_control.selectors import queue_is_active_held

from .models import Campaign, CampaignEvent
from .states import (
    CAMPAIGN_ACTIONS,
    NO_PAUSE,
    CampaignStatus,
    PauseCause,
    campaign_actions_allowed,
    campaign_allowed,
    campaign_can,
)

# scheduled_at is not here: it is the launch time the operator chose, set by campaign_schedule.
_TIMESTAMP_FOR: dict[str, str] = {
    CampaignStatus.RUNNING: "started_at",
    CampaignStatus.PAUSED: "paused_at",
    CampaignStatus.COMPLETED: "completed_at",
    CampaignStatus.FAILED: "failed_at",
    CampaignStatus.CANCELLED: "cancelled_at",
}
# Set on the first move there only: started_at is when the campaign first ran. Each resume is a
# history row (campaign.running, from paused), not a new start.
_FIRST_ONLY = {"started_at"}


def campaign_timestamps(to_status: str, now) -> dict:
    """The timestamp fields a move to `to_status` sets, for a set-based UPDATE of many campaigns
    (the queue cascade): the same table as one campaign's move, the first start kept."""
    field = _TIMESTAMP_FOR.get(to_status)
    if field is None:
        return {}
    if field in _FIRST_ONLY:
        return {field: Coalesce(F(field), Value(now, output_field=DateTimeField()))}
    return {field: now}


def _actor_label(actor, actor_label: str) -> str:
    if actor_label:
        return actor_label
    return actor.get_username() if actor is not None else "system"


def _allowed_facts(status: str) -> dict:
    return {
        "current_status": status,
        "allowed_actions": [action.name for action in campaign_actions_allowed(status)],
        "allowed_transitions": list(campaign_allowed(status)),
    }


def _refuse(campaign: Campaign, target: str) -> ApplicationError:
    facts = _allowed_facts(campaign.status)
    return ApplicationError(
        f"Cannot move campaign from {campaign.status} to {target}. "
        f"Allowed from {campaign.status}: {', '.join(facts['allowed_transitions']) or 'none (final)'}.",
        **facts,
    )


def action_refusal(campaign: Campaign, action: str) -> ApplicationError:
    """The 409 for an action its table does not allow from the campaign's status: names the
    status, where the action may start from, and the actions allowed now."""
    facts = _allowed_facts(campaign.status)
    sources = CAMPAIGN_ACTIONS[action].sources
    return ApplicationError(
        f"Cannot {action} a {campaign.status} campaign: {action} is allowed only from {' or '.join(sources)}. "
        f"Allowed from {campaign.status}: {', '.join(facts['allowed_actions']) or 'none (final)'}.",
        action=action,
        **facts,
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


def _move(
    campaign: Campaign,
    *,
    to_status: str,
    actor,
    actor_label: str,
    reason: str,
    pause: PauseCause | None,
    status_message: str | None,
    status_error: str | None,
) -> Campaign:
    from_status = campaign.status
    campaign.status = to_status
    field = _TIMESTAMP_FOR.get(to_status)
    if field is not None and not (field in _FIRST_ONLY and getattr(campaign, field) is not None):
        setattr(campaign, field, timezone.now())
    cause = pause.fields() if pause is not None and to_status == CampaignStatus.PAUSED else NO_PAUSE
    for field, value in cause.items():
        setattr(campaign, field, value)
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
        reason=reason or campaign.pause_cause,
    )
    return campaign


def campaign_transition(
    *,
    campaign_id,
    to_status: str,
    actor=None,
    actor_label: str = "",
    reason: str = "",
    pause: PauseCause | None = None,
    status_message: str | None = None,
    status_error: str | None = None,
) -> Campaign:
    """Move a campaign along the transitions table, or raise ApplicationError naming what is allowed."""
    with transaction.atomic():
        # The row lock serialises concurrent transitions: of two simultaneous moves, the second
        # sees the first one's status and is refused if it no longer applies.
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign_can(campaign.status, to_status):
            raise _refuse(campaign, to_status)
        return _move(
            campaign,
            to_status=to_status,
            actor=actor,
            actor_label=actor_label,
            reason=reason,
            pause=pause,
            status_message=status_message,
            status_error=status_error,
        )


def campaign_act(
    *,
    campaign_id,
    action: str,
    actor=None,
    actor_label: str = "",
    reason: str = "",
    pause: PauseCause | None = None,
    check: Callable[[Campaign], None] | None = None,
) -> Campaign:
    """Perform an operator's action: refused (ApplicationError) unless the campaign's status is one
    of the action's sources, then `check(campaign)` (the service's other conditions: queue open,
    content complete), both under the row lock, so nothing changes between the checks and the move."""
    with transaction.atomic():
        # The queue latch first (shared), then the campaign: the pause cascade's order. A queue
        # pause or resume waits for this action to commit instead of missing its campaign, and
        # the two cannot deadlock (queue_control.selectors.queue_is_active_held).
        queue_is_active_held()
        # The row lock serialises concurrent actions: of two simultaneous starts, the second sees
        # `running` and is refused.
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status not in CAMPAIGN_ACTIONS[action].sources:
            raise action_refusal(campaign, action)
        if check is not None:
            check(campaign)
        return _move(
            campaign,
            to_status=CAMPAIGN_ACTIONS[action].target,
            actor=actor,
            actor_label=actor_label,
            reason=reason,
            pause=pause,
            status_message=None,
            status_error=None,
        )
