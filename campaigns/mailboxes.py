"""Sender mailboxes: every write goes through here (the API, the admin, the sender, the guard).

A mailbox has a pause latch of its own, sticky like the queue's. Two things set it: the
mailbox's SMTP breaker opening (`mailbox_failure_record`, breaker `mailbox.<id>` in
queue_control.breakers) and the deliverability guard (tracking/deliverability.py). Setting it
pauses every running campaign that uses the mailbox (cause kind breaker or deliverability, with
the mailbox) and their pending and processing jobs, in one transaction, set-based; nothing else
is touched: the queue, the other mailboxes and the campaigns that do not use it go on. Only an
operator clears it (`mailbox_resume`), refused while the breaker is not closed, or while the
figure is still above its threshold unless the operator acknowledges it. History: QueueEvent
rows with service `mailbox.<id>`.
"""

from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from queue_control import breakers
from queue_control.guard import classify
from queue_control.models import QueueEvent
from queue_control.selectors import breaker_state, queue_is_active
from queue_control.services import breaker_opened_record

from .dispatch import campaigns_kick
from .models import Campaign, Job, Mailbox, Organization
from .pausing import PAUSABLE_JOB_STATUSES, _events_insert
from .pipeline import pipeline_advance
from .secrets import secret_encrypt
from .states import NO_PAUSE, CampaignStatus, JobStatus, MailboxPauseKind, PauseCause, PauseKind
from .transitions import campaign_timestamps

SYSTEM = "system"
# Fields an operator writes; the passwords come in apart (write-only) and are stored encrypted.
MAILBOX_FIELDS = (
    "name",
    "from_email",
    "from_name",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_security",
    "imap_host",
    "imap_port",
    "imap_username",
    "imap_ssl",
    "daily_cap",
    "ramp_start_cap",
    "ramp_daily_increase",
    "ramp_started_on",
    "min_gap_seconds",
    "active",
)

# Further conditions of a mailbox's resume per pause kind (tracking registers the deliverability
# figure's check): each is called (mailbox=, acknowledge=) and raises ApplicationError to refuse.
MAILBOX_RESUME_GUARDS: dict[str, list[Callable[..., None]]] = {}
# Called (mailbox=, campaign_ids=) in the transaction of a mailbox's pause, for the running
# campaigns that go on from their other mailboxes (tracking registers the hand-off of the
# recipients nothing was sent to yet).
MAILBOX_HANDOFFS: list[Callable[..., object]] = []


def _label(actor, actor_label: str = "") -> str:
    if actor_label:
        return actor_label[:150]
    return actor.get_username() if actor is not None else SYSTEM


def _campaigns_check(*, organization_id: int, campaigns: list[Campaign]) -> None:
    foreign = [str(c.pk) for c in campaigns if c.organization_id != organization_id]
    if foreign:
        raise ValidationError({"campaigns": f"Not campaigns of the mailbox's organization: {', '.join(foreign)}."})


def _ramp_check(mailbox: Mailbox) -> None:
    if mailbox.ramp_start_cap and mailbox.ramp_start_cap > mailbox.daily_cap:
        raise ValidationError({"ramp_start_cap": "The ramp-up cannot start above the daily cap."})
    if mailbox.ramp_start_cap and not mailbox.ramp_daily_increase and mailbox.ramp_start_cap < mailbox.daily_cap:
        raise ValidationError({"ramp_daily_increase": "A ramp-up that starts below the daily cap must increase."})


def mailbox_create(
    *,
    organization: Organization,
    actor=None,
    smtp_password: str = "",
    imap_password: str = "",
    campaigns: list[Campaign] | None = None,
    **fields,
) -> Mailbox:
    """A new mailbox; its passwords are stored encrypted. Validation errors name the field."""
    unknown = sorted(set(fields) - set(MAILBOX_FIELDS))
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    mailbox = Mailbox(organization=organization, **fields)
    mailbox.smtp_password_encrypted = secret_encrypt(smtp_password)
    mailbox.imap_password_encrypted = secret_encrypt(imap_password)
    mailbox.full_clean()
    _ramp_check(mailbox)
    _campaigns_check(organization_id=organization.pk, campaigns=campaigns or [])
    with transaction.atomic():
        mailbox.save()
        if campaigns:
            mailbox.campaigns.set(campaigns)
    return mailbox


def mailbox_update(
    *,
    mailbox: Mailbox,
    actor=None,
    smtp_password: str | None = None,
    imap_password: str | None = None,
    campaigns: list[Campaign] | None = None,
    **fields,
) -> Mailbox:
    """Change what is given; a password given (even empty) replaces the stored one, one not given
    stays. Recipients already given this mailbox keep it."""
    unknown = sorted(set(fields) - set(MAILBOX_FIELDS))
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    for name, value in fields.items():
        setattr(mailbox, name, value)
    if smtp_password is not None:
        mailbox.smtp_password_encrypted = secret_encrypt(smtp_password)
    if imap_password is not None:
        mailbox.imap_password_encrypted = secret_encrypt(imap_password)
    mailbox.full_clean()
    _ramp_check(mailbox)
    if campaigns is not None:
        _campaigns_check(organization_id=mailbox.organization_id, campaigns=campaigns)
    with transaction.atomic():
        mailbox.save()
        if campaigns is not None:
            mailbox.campaigns.set(campaigns)
    return mailbox


def mailbox_delete(*, mailbox: Mailbox, actor=None) -> None:
    """Refused (409) once recipients were given the mailbox: their follow-ups go from it. Set it
    inactive instead."""
    if mailbox.recipients.exists():
        raise ApplicationError(
            "Cannot delete a mailbox that recipients were given (their follow-ups go from it); "
            "set it inactive instead.",
        )
    mailbox.delete()


# --- the latch ---------------------------------------------------------------------------------


def _dependent_running(mailbox_id: int) -> list:
    # Row locks on the campaigns (pk order, as the queue cascade), so none completes or is
    # cancelled between reading and pausing.
    return list(
        Campaign.objects.select_for_update()
        .filter(status=CampaignStatus.RUNNING, mailboxes__pk=mailbox_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def campaigns_with_another_mailbox(*, campaign_ids, mailbox_id: int) -> set:
    """Of these campaigns, those with another active mailbox that is not paused."""
    through = Mailbox.campaigns.through
    return set(
        through.objects.filter(campaign_id__in=list(campaign_ids), mailbox__active=True, mailbox__pause_kind="")
        .exclude(mailbox_id=mailbox_id)
        .values_list("campaign_id", flat=True)
    )


def mailbox_pause(*, mailbox_id: int, kind: str, figure: str = "", actor=None, actor_label: str = "") -> Mailbox:
    """Latch the mailbox paused and pause what depends on it. A running campaign with another
    usable mailbox goes on from it: the recipients nothing was sent to yet move there
    (MAILBOX_HANDOFFS), and those whose thread is this mailbox's wait for its resume. A campaign
    left without one is paused (cause `kind` with this mailbox), its pending and processing jobs
    too. Idempotent: a second pause keeps the first cause and writes no second event, but
    sweeps anything left running."""
    label = _label(actor, actor_label)
    now = timezone.now()
    with transaction.atomic():
        # The mailbox row lock serialises a breaker and the guard tripping at once.
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox_id)
        if not mailbox.is_paused:
            mailbox.pause_kind, mailbox.pause_figure, mailbox.paused_at = kind, figure[:255], now
            mailbox.save(update_fields=["pause_kind", "pause_figure", "paused_at", "updated_at"])
            QueueEvent.objects.create(
                kind=QueueEvent.Kind.MAILBOX_PAUSED,
                service=breakers.mailbox_breaker(mailbox.pk),
                reason=f"{kind}: {figure}"[:500] if figure else kind,
                actor=actor,
                actor_label=label,
                details={"mailbox": mailbox.pk, "kind": kind, "figure": figure},
            )
        ids = _dependent_running(mailbox.pk)
        going_on = campaigns_with_another_mailbox(campaign_ids=ids, mailbox_id=mailbox.pk)
        if going_on:
            for handoff in MAILBOX_HANDOFFS:
                handoff(mailbox=mailbox, campaign_ids=sorted(going_on))
        ids = [pk for pk in ids if pk not in going_on]
        if ids:
            cause = PauseCause(
                PauseKind.DELIVERABILITY
                if mailbox.pause_kind == MailboxPauseKind.DELIVERABILITY
                else PauseKind.BREAKER,
                mailbox_id=mailbox.pk,
                figure=mailbox.pause_figure,
            )
            Campaign.objects.filter(pk__in=ids).update(
                status=CampaignStatus.PAUSED,
                **cause.fields(),
                updated_at=now,
                **campaign_timestamps(CampaignStatus.PAUSED, now),
            )
            _events_insert(
                ids,
                from_status=CampaignStatus.RUNNING,
                to_status=CampaignStatus.PAUSED,
                reason=f"mailbox {mailbox.name} paused: {mailbox.pause_kind} {mailbox.pause_figure}".strip(),
                actor=actor,
                label=label,
                now=now,
            )
            Job.objects.active().filter(campaign_id__in=ids, status__in=PAUSABLE_JOB_STATUSES).update(
                status=JobStatus.PAUSED, updated_at=now
            )
    return mailbox


def mailbox_resume(*, mailbox_id: int, actor, acknowledge: bool = False, actor_label: str = "") -> Mailbox:
    """Clear the mailbox's latch and wake the campaigns it paused, unless its breaker is not
    closed or (deliverability) its figure is still above the threshold without `acknowledge`;
    then refuse (409) and record the refusal. A woken campaign whose queue is paused waits for
    the queue (cause queue); one that uses another paused mailbox waits for that one."""
    label = _label(actor, actor_label)
    now = timezone.now()
    name = breakers.mailbox_breaker(mailbox_id)
    refusal = ""
    with transaction.atomic():
        mailbox = Mailbox.objects.select_for_update().get(pk=mailbox_id)
        state = breaker_state(name)
        if state != breakers.CLOSED:
            refusal = f"Cannot resume: the mailbox's SMTP breaker ({name}) is {state}; reset it first."
        else:
            try:
                for check in MAILBOX_RESUME_GUARDS.get(mailbox.pause_kind, ()):
                    check(mailbox=mailbox, acknowledge=acknowledge, actor=actor)
            except ApplicationError as exc:
                refusal = exc.message
        if not refusal:
            was = (mailbox.pause_kind, mailbox.pause_figure)
            mailbox.pause_kind, mailbox.pause_figure, mailbox.paused_at = "", "", None
            mailbox.save(update_fields=["pause_kind", "pause_figure", "paused_at", "updated_at"])
            QueueEvent.objects.create(
                kind=QueueEvent.Kind.MAILBOX_RESUMED,
                service=name,
                reason="figure acknowledged by the operator" if acknowledge and was[0] else "",
                actor=actor,
                actor_label=label,
                details={"mailbox": mailbox.pk, "was": was[0], "figure": was[1], "acknowledged": acknowledge},
            )
            _campaigns_wake(mailbox=mailbox, actor=actor, label=label, now=now)
            # Running campaigns that went on from their other mailboxes: what waited for this
            # one is claimable again, and the campaign's phase, if it was waiting, makes its jobs.
            running = list(
                Campaign.objects.filter(status=CampaignStatus.RUNNING, mailboxes__pk=mailbox.pk).values_list(
                    "pk", flat=True
                )
            )

            def advance() -> None:
                for pk in running:
                    pipeline_advance(campaign_id=pk)

            transaction.on_commit(advance)
            return mailbox
    QueueEvent.objects.create(
        kind=QueueEvent.Kind.MAILBOX_RESUME_REFUSED,
        service=name,
        reason=refusal[:500],
        actor=actor,
        actor_label=label,
        details={"mailbox": mailbox_id},
    )
    raise ApplicationError(refusal, mailbox=mailbox_id)


def _campaigns_wake(*, mailbox: Mailbox, actor, label: str, now) -> None:
    paused = Campaign.objects.select_for_update().filter(status=CampaignStatus.PAUSED, pause_mailbox_id=mailbox.pk)
    ids = list(paused.order_by("pk").values_list("pk", flat=True))
    if not ids:
        return
    # A campaign is paused for a mailbox only when it had no other usable one; with this one back
    # it goes on, and the recipients bound to its other paused mailboxes, if any, wait for those.
    if not queue_is_active():  # they wait for the queue resume now
        Campaign.objects.filter(pk__in=ids).update(**PauseCause(PauseKind.QUEUE).fields(), updated_at=now)
        return
    Campaign.objects.filter(pk__in=ids).update(
        status=CampaignStatus.RUNNING, **NO_PAUSE, updated_at=now, **campaign_timestamps(CampaignStatus.RUNNING, now)
    )
    _events_insert(
        ids,
        from_status=CampaignStatus.PAUSED,
        to_status=CampaignStatus.RUNNING,
        reason=f"mailbox {mailbox.name} resumed",
        actor=actor,
        label=label,
        now=now,
    )
    Job.objects.active().filter(campaign_id__in=ids, status=JobStatus.PAUSED).update(
        status=JobStatus.PENDING, updated_at=now
    )
    campaigns_kick(ids)


# --- the breaker -------------------------------------------------------------------------------


def mailbox_failure_record(*, mailbox_id: int, error: BaseException) -> bool:
    """Count an SMTP error of this mailbox against its own breaker, if it is the service's fault
    (as guard.failure_record does for a service). The failure that opens it pauses the mailbox;
    returns True for that one call only."""
    counts, trips = classify(error)
    if not counts:
        return False
    name = breakers.mailbox_breaker(mailbox_id)
    message = f"{type(error).__name__}: {error}"
    opened, failures = breakers.breaker_failure_count(name, message, trips_immediately=trips)
    if opened:
        with transaction.atomic():
            breaker_opened_record(
                service=name,
                reason=message,
                details={"failures": failures, "mailbox": mailbox_id, "trips_immediately": trips},
            )
            mailbox_pause(mailbox_id=mailbox_id, kind=MailboxPauseKind.BREAKER, figure=message)
    return opened


def mailbox_breaker_reset(*, mailbox_id: int, actor, actor_label: str = "") -> str:
    """Close the mailbox's breaker. Nothing else changes: the mailbox and its campaigns stay
    paused until an operator resumes the mailbox."""
    Mailbox.objects.only("pk").get(pk=mailbox_id)
    name = breakers.mailbox_breaker(mailbox_id)
    before = breaker_state(name)
    with transaction.atomic():
        QueueEvent.objects.create(
            kind=QueueEvent.Kind.BREAKER_RESET,
            service=name,
            actor=actor,
            actor_label=_label(actor, actor_label),
            details={"state": before, "mailbox": mailbox_id},
        )
        breakers.breaker_close(name)
    return breaker_state(name)
