"""State machines, written once as data. Services consult these tables; nothing else compares statuses."""

from dataclasses import dataclass

from django.db import models


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class PauseKind(models.TextChoices):
    """Why a campaign is paused. Stored with the service (breaker) or the mailbox and the figure
    (a mailbox's breaker, deliverability) in fields of their own, never parsed out of a string."""

    MANUAL = "manual"  # an operator paused it: an operator resumes it
    JOB = "job"  # one of its jobs was paused: resumes with the queue
    QUEUE = "queue"  # the queue was paused by an operator: resumes with the queue
    BREAKER = "breaker"  # a service's breaker (pause_service) or a mailbox's (pause_mailbox)
    DELIVERABILITY = "deliverability"  # its own or a mailbox's bounce or complaint rate (pause_figure)


class MailboxPauseKind(models.TextChoices):
    BREAKER = "breaker"
    DELIVERABILITY = "deliverability"


@dataclass(frozen=True)
class PauseCause:
    """A campaign's pause cause as the fields store it."""

    kind: str
    service: str = ""
    mailbox_id: int | None = None
    figure: str = ""

    def fields(self) -> dict:
        return {
            "pause_kind": self.kind,
            "pause_service": self.service,
            "pause_mailbox_id": self.mailbox_id,
            "pause_figure": self.figure[:255],
        }


NO_PAUSE = {"pause_kind": "", "pause_service": "", "pause_mailbox_id": None, "pause_figure": ""}


def pause_fields(campaign) -> dict | None:
    """The pause cause as fields, for API and live payloads; None unless the campaign is paused."""
    if not campaign.pause_kind:
        return None
    return {
        "kind": campaign.pause_kind,
        "service": campaign.pause_service or None,
        "mailbox": campaign.pause_mailbox_id,
        "figure": campaign.pause_figure or None,
    }


def pause_cause_display(*, kind: str, service: str = "", mailbox_id=None, figure: str = "") -> str:
    """The cause as one readable string for the API and the admin (`breaker:apollo`,
    `breaker:mailbox.3`, `deliverability:bounce rate 7.0% > 5.0% after 120 sends`). Derived,
    for display only: nothing reads a cause back out of it."""
    if not kind:
        return ""
    if kind == PauseKind.BREAKER:
        return f"breaker:{service or f'mailbox.{mailbox_id}'}"
    if kind == PauseKind.DELIVERABILITY:
        where = f" (mailbox.{mailbox_id})" if mailbox_id else ""
        return f"deliverability:{figure}{where}"
    return kind


class Phase(models.TextChoices):
    LEAD_SOURCING = "lead_sourcing"
    VERIFICATION = "verification"
    ENRICHMENT = "enrichment"
    OUTREACH = "outreach"
    DONE = "done"


PHASE_ORDER = [Phase.LEAD_SOURCING, Phase.VERIFICATION, Phase.ENRICHMENT, Phase.OUTREACH, Phase.DONE]


class JobStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobType(models.TextChoices):
    FETCH_LEADS = "fetch_leads"
    VERIFY_EMAIL = "verify_email"
    ENRICH_LEAD = "enrich_lead"
    SEND_EMAIL = "send_email"
    PUSH_INSTANTLY = "push_instantly"


# The job types whose outcomes make up each phase (done has none), and the Celery queue (a key of
# settings.CELERY_QUEUE_NAMES) whose workers run each type.
PHASE_JOB_TYPES: dict[str, tuple[str, ...]] = {
    Phase.LEAD_SOURCING: (JobType.FETCH_LEADS,),
    Phase.VERIFICATION: (JobType.VERIFY_EMAIL,),
    Phase.ENRICHMENT: (JobType.ENRICH_LEAD,),
    Phase.OUTREACH: (JobType.SEND_EMAIL, JobType.PUSH_INSTANTLY),
}
JOB_PHASE: dict[str, str] = {job_type: phase for phase, types in PHASE_JOB_TYPES.items() for job_type in types}
JOB_QUEUE: dict[str, str] = {
    JobType.FETCH_LEADS: "pipeline",
    JobType.VERIFY_EMAIL: "pipeline",
    JobType.ENRICH_LEAD: "pipeline",
    JobType.PUSH_INSTANTLY: "pipeline",
    JobType.SEND_EMAIL: "send",
}
QUEUE_JOB_TYPES: dict[str, tuple[str, ...]] = {
    queue: tuple(job_type for job_type, q in JOB_QUEUE.items() if q == queue) for queue in ("pipeline", "send")
}


S = CampaignStatus
# Every status move, whoever makes it: operators through the actions below, the pipeline
# (completed, failed) and the queue (paused, and running again on a queue resume).
CAMPAIGN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.DRAFT: (S.SCHEDULED, S.RUNNING, S.CANCELLED),
    S.SCHEDULED: (S.RUNNING, S.DRAFT, S.CANCELLED),
    S.RUNNING: (S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED),
    S.PAUSED: (S.RUNNING, S.CANCELLED),
    S.COMPLETED: (),
    S.FAILED: (),
    S.CANCELLED: (),
}


@dataclass(frozen=True)
class CampaignAction:
    """An operator's action on a campaign: the statuses it may start from, the status it leads
    to, and the service (in campaigns.services) that performs it."""

    name: str
    sources: tuple[str, ...]
    target: str
    service: str
    # Asked in the admin before the action runs; empty for actions taken at one click.
    confirm: str = ""


_ACTIONS = (
    CampaignAction("start", (S.DRAFT, S.SCHEDULED), S.RUNNING, "campaign_start"),
    CampaignAction("schedule", (S.DRAFT,), S.SCHEDULED, "campaign_schedule"),
    CampaignAction("unschedule", (S.SCHEDULED,), S.DRAFT, "campaign_unschedule"),
    CampaignAction("pause", (S.RUNNING,), S.PAUSED, "campaign_pause"),
    CampaignAction("resume", (S.PAUSED,), S.RUNNING, "campaign_resume"),
    CampaignAction(
        "cancel",
        (S.DRAFT, S.SCHEDULED, S.RUNNING, S.PAUSED),
        S.CANCELLED,
        "campaign_cancel",
        confirm="Cancel this campaign? Its pending work is dropped and it cannot be started again.",
    ),
)
CAMPAIGN_ACTIONS: dict[str, CampaignAction] = {action.name: action for action in _ACTIONS}
# Every action is one of the status moves above: the actions choose among the moves, the
# transitions table says which moves exist at all.
for _action in _ACTIONS:
    for _source in _action.sources:
        if _action.target not in CAMPAIGN_TRANSITIONS[_source]:
            raise ValueError(f"Action {_action.name} moves {_source} -> {_action.target}, not a campaign transition")

# Content may be edited only in these statuses; a running campaign's content is frozen.
CAMPAIGN_EDITABLE_STATUSES = (S.DRAFT, S.SCHEDULED, S.PAUSED)
# A paused campaign still owns paused jobs that a queue resume would wake, so it is not deletable.
CAMPAIGN_DELETABLE_STATUSES = (S.DRAFT, S.SCHEDULED, S.COMPLETED, S.FAILED, S.CANCELLED)
CAMPAIGN_FINAL_STATUSES = (S.COMPLETED, S.FAILED, S.CANCELLED)

J = JobStatus
JOB_TRANSITIONS: dict[str, tuple[str, ...]] = {
    J.PENDING: (J.PROCESSING, J.PAUSED, J.CANCELLED),
    J.PROCESSING: (J.COMPLETED, J.FAILED, J.PAUSED, J.CANCELLED, J.PENDING),  # -> pending: retry or reaped
    # A paused job whose in-flight call had already finished records its outcome rather than
    # being run a second time after resume.
    J.PAUSED: (J.PENDING, J.CANCELLED, J.COMPLETED, J.FAILED),
    J.COMPLETED: (),
    J.FAILED: (),
    J.CANCELLED: (),
}
JOB_FINAL_STATUSES = (J.COMPLETED, J.FAILED, J.CANCELLED)
JOB_ACTIVE_STATUSES = (J.PENDING, J.PROCESSING, J.PAUSED)


def campaign_allowed(status: str) -> tuple[str, ...]:
    return CAMPAIGN_TRANSITIONS.get(status, ())


def campaign_can(current: str, target: str) -> bool:
    return target in CAMPAIGN_TRANSITIONS.get(current, ())


def campaign_actions_allowed(status: str) -> list[CampaignAction]:
    """The actions whose sources include `status`, in the table's order."""
    return [action for action in _ACTIONS if status in action.sources]


def campaign_action_can(current: str, action: str) -> bool:
    return action in CAMPAIGN_ACTIONS and current in CAMPAIGN_ACTIONS[action].sources
