"""Sequences: what each step of a campaign sends, when the next step is due, the sending window,
the stop rules and the A/B winner.

How a recipient advances (docs/flows/sequence.md): step k is claimed and sent by the send batch
as step 1 always was (tracking/sending.py). Its "sent" mark writes a StepSend row and, when a
step k+1 exists, `next_send_at` = now + that step's delay. The outreach settler, which the
sweeper asks again every ENGINE_SWEEP_SECONDS while the campaign waits, arms the recipients
that are due (sent → pending, step k+1) and creates send jobs for them. A claimed recipient
outside its window goes back to pending with `next_send_at` = the window's next opening. So
nothing waits in the broker and nothing polls faster than the sweep.

Every time here is read from tracking.clock, which tests set.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q

from campaigns.models import Campaign

from . import clock
from .counters import counters_add
from .models import Recipient
from .models_sequences import SequenceSettings, SequenceStep, StepSend, StepVariant, StopReason
from .states import EventType, RecipientStatus

# Company-wide stops never cover these: a reply from one gmail.com address says nothing about
# the others.
FREE_MAIL_DOMAINS = frozenset(
    {
        *("gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "hotmail.com", "hotmail.co.uk"),
        *("outlook.com", "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me"),
        *("protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "mail.ru", "zoho.com"),
    }
)

# Events that always stop a recipient's sequence, and the reason recorded.
ALWAYS_STOP: dict[str, str] = {
    EventType.REPLY: StopReason.REPLIED,
    EventType.BOUNCE: StopReason.BOUNCED,
    EventType.UNSUBSCRIBE: StopReason.UNSUBSCRIBED,
    EventType.COMPLAIN: StopReason.COMPLAINED,
}
# Events after which the organization's other campaigns stop mailing the address too (the
# suppression list already keeps unsent recipients from being mailed).
ORGANIZATION_WIDE = (EventType.UNSUBSCRIBE, EventType.COMPLAIN, EventType.BOUNCE)


# --- Windows and delays ------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _holidays(rules: SequenceSettings) -> set[date]:
    return {date.fromisoformat(day) for day in rules.holidays or ()}


def window_next_open(*, rules: SequenceSettings | None, at: datetime, tz_name: str = "") -> datetime:
    """The earliest instant at or after `at` inside the window (`at` itself when it is inside,
    or when the campaign has no window). `tz_name`: the lead's zone, used when the campaign says
    so and it is a known zone."""
    if rules is None or not rules.window_enabled:
        return at
    tz = zone(tz_name) if rules.use_lead_timezone and tz_name else zone(rules.timezone)
    days, holidays = set(rules.days), _holidays(rules)
    local = at.astimezone(tz)
    # Validation keeps at least one day of the week, so only holidays covering a whole year (which
    # nobody writes) would make this give up.
    for offset in range(0, 400):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in days or day in holidays:
            continue
        opens = datetime.combine(day, rules.start_time, tzinfo=tz)
        closes = datetime.combine(day, rules.end_time, tzinfo=tz)
        if offset == 0 and opens <= local < closes:
            return at
        if local < opens:
            return opens
    raise ValueError("The sending window never opens.")


def step_due(*, step: SequenceStep, after: datetime, rules: SequenceSettings | None) -> datetime:
    """When `step` is due, its delay counted from `after`: calendar days, or business days
    (Monday to Friday, minus the campaign's holidays, in the campaign's zone)."""
    if not step.business_days:
        return after + timedelta(days=step.delay_days)
    tz = zone(rules.timezone) if rules else zone("UTC")
    holidays = _holidays(rules) if rules else set()
    local, left = after.astimezone(tz), step.delay_days
    while left:
        local = local + timedelta(days=1)
        if local.weekday() < 5 and local.date() not in holidays:
            left -= 1
    return local


# --- What a step sends -------------------------------------------------------------------------


@dataclass
class Templates:
    """The two templates render_content reads, for a step or a variant."""

    subject_template: str
    body_template: str


@dataclass
class Plan:
    """A campaign's sequence, read once per send batch: steps by number (1 is the campaign's
    message), variants by step, the window and stop rules."""

    campaign: Campaign
    steps: dict[int, SequenceStep] = field(default_factory=dict)
    variants: dict[int, list[StepVariant]] = field(default_factory=dict)
    rules: SequenceSettings | None = None

    def undecided(self) -> bool:
        """Whether a step with variants still waits for its winner to be picked."""
        return bool(
            self.rules
            and self.rules.ab_winner_after
            and any(not any(v.is_winner for v in variants) for variants in self.variants.values())
        )

    def variant_for(self, recipient_id: int, step: int) -> StepVariant | None:
        """A recipient's variant of `step`: the winner once there is one, else by weight, from a
        hash of (recipient, step) so that a message sent again after a release is the same."""
        variants = self.variants.get(step)
        if not variants:
            return None
        winners = [variant for variant in variants if variant.is_winner]
        if winners:
            return winners[0]
        total = sum(variant.weight for variant in variants)
        if total <= 0:
            return variants[0]
        digest = hashlib.blake2b(f"{recipient_id}:{step}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") % total
        for variant in variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return variants[-1]

    def templates_for(
        self, recipient_id: int, step: int, sent_variants: dict[int, str]
    ) -> tuple[Campaign | Templates, str]:
        """(templates, variant label) of `step` for a recipient; `sent_variants` are the variants
        it got of earlier steps (a "Re:" subject repeats the subject it received)."""
        variant = self.variant_for(recipient_id, step)
        label = variant.label if variant else ""
        if step == 1:
            if variant is None:
                return self.campaign, ""  # exactly today's message
            return Templates(variant.subject_template or self.campaign.subject_template, variant.body_template), label
        own = self.steps[step]
        subject = variant.subject_template if variant and variant.subject_template else own.subject_template
        if not subject.strip() and own.same_thread:
            subject = _re(self._subject_of(step - 1, sent_variants))
        return Templates(subject, variant.body_template if variant else own.body_template), label

    def _subject_of(self, step: int, sent_variants: dict[int, str]) -> str:
        """The subject template of `step` as the recipient received it."""
        label = sent_variants.get(step)
        variant = next((v for v in self.variants.get(step, ()) if v.label == label), None) if label else None
        if variant is not None and variant.subject_template:
            return variant.subject_template
        own = self.steps.get(step)
        if step == 1 or own is None:
            return self.campaign.subject_template
        if not own.subject_template.strip() and own.same_thread:
            return _re(self._subject_of(step - 1, sent_variants))
        return own.subject_template


def _re(subject: str) -> str:
    return subject if subject.lstrip().lower().startswith("re:") else f"Re: {subject}"


def sequence_plan(*, campaign: Campaign, rules: SequenceSettings | None = None) -> Plan:
    """The campaign's plan; `rules` when the caller read them already."""
    rules = rules or SequenceSettings.objects.filter(campaign=campaign).first()
    plan = Plan(campaign=campaign, rules=rules)
    plan.steps = {step.number: step for step in SequenceStep.objects.filter(campaign=campaign)}
    for variant in StepVariant.objects.filter(campaign=campaign).order_by("step", "label"):
        plan.variants.setdefault(variant.step, []).append(variant)
    return plan


def thread_of(*, recipient_ids: list[int]) -> dict[int, list[tuple[int, str, str]]]:
    """Each recipient's steps sent so far: (step, variant, Message-ID) in step order."""
    threads: dict[int, list[tuple[int, str, str]]] = {}
    rows = StepSend.objects.filter(recipient_id__in=recipient_ids).order_by("recipient_id", "step")
    for recipient_id, step, variant, message_id in rows.values_list("recipient_id", "step", "variant", "message_id"):
        threads.setdefault(recipient_id, []).append((step, variant, message_id))
    return threads


# --- Sent, due, armed ----------------------------------------------------------------------------


def sequence_sent_record(*, campaign_id, job_id: int, ids: list[int], variants: dict[int, str] | None = None) -> int:
    """Inside recipients_mark_sent's transaction, for the recipients it just marked sent: one
    StepSend each, and the due time of the next step for those that have one and did not stop.
    Returns how many were follow-ups (step 2 or later), which the "recipients sent" figures do
    not count again.

    The StepSend rows inserted are the facts counted: the claim takes only a recipient whose
    current step has no row, so a row inserted here is a step newly sent, and one that exists
    (a journal replayed after a flush) is refused by the unique (recipient, step), counted never."""
    if not ids:
        return 0
    now = clock.now()
    rows = list(
        Recipient.objects.filter(pk__in=ids, send_job_id=job_id, status=RecipientStatus.SENT).values_list(
            "pk", "sequence_step", "message_id", "sent_at"
        )
    )
    if not rows:
        return 0
    labels = dict(variants or {})
    if variants is None and StepVariant.objects.filter(campaign_id=campaign_id).exists():
        plan = sequence_plan(campaign=Campaign.objects.get(pk=campaign_id))  # a recovery: no labels kept
        labels = {pk: getattr(plan.variant_for(pk, step), "label", "") for pk, step, _, _ in rows}
    facts = [(pk, step, labels.get(pk, ""), message_id, at or now) for pk, step, message_id, at in rows]
    return _steps_record(campaign_id, facts)


def sequence_resolved_sent(*, campaign_id, ids: list[int], resolved_at: datetime) -> int:
    """An operator marked recipients stuck in `sending` delivered (recipients_resolve): their step
    is recorded as sent (its Message-ID was lost with the worker) and the next one scheduled, as
    a "sent" mark does. Returns how many were follow-ups."""
    rows = list(
        Recipient.objects.filter(
            pk__in=ids, campaign_id=campaign_id, status=RecipientStatus.SENT, sent_at=resolved_at
        ).values_list("pk", "sequence_step")
    )
    if not rows:
        return 0
    plan = sequence_plan(campaign=Campaign.objects.get(pk=campaign_id))
    facts = [(pk, step, getattr(plan.variant_for(pk, step), "label", ""), "", resolved_at) for pk, step in rows]
    return _steps_record(campaign_id, facts)


def _steps_record(campaign_id, facts: list[tuple]) -> int:
    """StepSend rows for (recipient, step, variant, Message-ID, time) facts, the step counters and
    the next step's due time, for the rows actually inserted; returns the follow-ups among them."""
    now = clock.now()
    inserted = _step_sends_insert(campaign_id, facts)
    by_step: dict[int, list[int]] = {}
    for pk, step in inserted:
        by_step.setdefault(step, []).append(pk)
    counters_add(campaign_id=campaign_id, metrics={f"step.{step}.sent": len(pks) for step, pks in by_step.items()})
    later = SequenceStep.objects.filter(campaign_id=campaign_id, number__in=[k + 1 for k in by_step])
    steps = {step.number: step for step in later}
    if steps:
        rules = SequenceSettings.objects.filter(campaign_id=campaign_id).first()
        for step, pks in by_step.items():
            if step + 1 in steps:
                due = step_due(step=steps[step + 1], after=now, rules=rules)
                Recipient.objects.filter(pk__in=pks, stopped_at__isnull=True).update(next_send_at=due)
    return sum(len(pks) for step, pks in by_step.items() if step > 1)


def _step_sends_insert(campaign_id, rows: list[tuple]) -> list[tuple[int, int]]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the (recipient, step) rows actually inserted.
    Raw SQL because bulk_create with ignore_conflicts does not say which rows it inserted."""
    table = connection.ops.quote_name(StepSend._meta.db_table)
    campaign = StepSend._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, connection)
    sent_at = StepSend._meta.get_field("sent_at")
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    params = [
        value
        for pk, step, variant, message_id, at in rows
        for value in (pk, campaign, step, variant, message_id, sent_at.get_db_prep_value(at, connection))
    ]
    # Only the model's table name and placeholders are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {table} (recipient_id, campaign_id, step, variant, message_id, sent_at) "  # noqa: S608
        f"VALUES {values} ON CONFLICT (recipient_id, step) DO NOTHING RETURNING recipient_id, step"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(pk, step) for pk, step in cursor.fetchall()]


def sequence_arm_due(*, campaign: Campaign) -> int:
    """Recipients whose next step is due go back to pending on that step, in one UPDATE; a
    recipient whose next step was deleted since finishes instead. Returns how many were armed."""
    from .services import recipients_transition

    now = clock.now()
    last = SequenceStep.objects.filter(campaign=campaign).order_by("-number").values_list("number", flat=True).first()
    due = Q(status=RecipientStatus.SENT, next_send_at__lte=now, stopped_at__isnull=True)
    with transaction.atomic():
        Recipient.objects.filter(due, campaign=campaign, sequence_step__gte=last or 1).update(
            next_send_at=None, stopped_at=now, stop_reason=StopReason.FINISHED
        )
        if not last:
            return 0
        return recipients_transition(
            campaign_id=campaign.pk,
            to_status=RecipientStatus.PENDING,
            where=due & Q(sequence_step__lt=last),
            sequence_step=F("sequence_step") + 1,
            next_send_at=None,
            send_attempts=0,
            claimed_at=None,
            send_job_id=None,
            last_error="",
        )


def sequence_window_holds(*, ids: list[int], rules: SequenceSettings | None) -> dict[datetime, list[int]]:
    """Of the recipients a send job just claimed, those outside their sending window, grouped by
    the window's next opening (the caller hands them back, due then). Empty: send them all."""
    if rules is None or not rules.window_enabled or not ids:
        return {}
    now = clock.now()
    zones: dict[int, str] = {}
    if rules.use_lead_timezone:
        zones = {
            pk: tz if isinstance(tz, str) else ""
            for pk, tz in Recipient.objects.filter(pk__in=ids).values_list("pk", "lead__enrichment__timezone")
        }
    held: dict[datetime, list[int]] = {}
    for pk in ids:
        opens = window_next_open(rules=rules, at=now, tz_name=zones.get(pk, ""))
        if opens != now:
            held.setdefault(opens, []).append(pk)
    return held


def sequence_window_closed(*, campaign: Campaign, rules: SequenceSettings | None) -> bool:
    """Before a send job claims: when the campaign's window (in the campaign's zone, not the
    leads') is closed now, every due pending recipient waits for its opening, in one UPDATE, and
    the job claims nothing. Saves each of a campaign's jobs claiming a batch only to hold it."""
    if rules is None or not rules.window_enabled or rules.use_lead_timezone:
        return False
    now = clock.now()
    opens = window_next_open(rules=rules, at=now)
    if opens == now:
        return False
    due = Q(next_send_at__isnull=True) | Q(next_send_at__lt=opens)
    Recipient.objects.filter(due, campaign=campaign, status=RecipientStatus.PENDING, stopped_at__isnull=True).update(
        next_send_at=opens
    )
    return True


def sequence_window_closed_until(*, rules: SequenceSettings | None) -> datetime | None:
    """During a send batch, at its control points: the next opening when the campaign's window (in
    the campaign's zone) has closed, else None. (With the leads' own zones the claim-time check is
    the bound: a batch ends within ENGINE_TASK_BUDGET_SECONDS.)"""
    if rules is None or not rules.window_enabled or rules.use_lead_timezone:
        return None
    now = clock.now()
    opens = window_next_open(rules=rules, at=now)
    return None if opens == now else opens


def sequence_waiting(*, campaign: Campaign) -> tuple[int, datetime | None]:
    """Recipients waiting for a later step or their window: how many, and the earliest due time."""
    waiting = Recipient.objects.filter(campaign=campaign, next_send_at__isnull=False, stopped_at__isnull=True).filter(
        status__in=(RecipientStatus.SENT, RecipientStatus.PENDING)
    )
    first = waiting.order_by("next_send_at").values_list("next_send_at", flat=True).first()
    return (waiting.count() if first else 0), first


# --- Stop rules ----------------------------------------------------------------------------------


def sequence_stop(*, queryset, reason: str) -> int:
    """Stop the recipients of `queryset` that have not stopped: no further step is armed or
    claimed. One armed but not yet claimed (pending on step 2 or later) goes back to the step it
    was sent, so its status says what it received. A step already claimed is not called back: its
    hand-over may have begun."""
    now = clock.now()
    with transaction.atomic():
        stopped = queryset.filter(stopped_at__isnull=True)
        stopped.filter(status=RecipientStatus.PENDING, sequence_step__gt=1).update(
            status=RecipientStatus.SENT, sequence_step=F("sequence_step") - 1
        )
        return stopped.update(stopped_at=now, stop_reason=reason, next_send_at=None)


def sequence_on_event(*, type: str, recipient_id: int, campaign_id) -> int:
    """The stop rules, applied to one recorded event of a recipient (inside the event's
    transaction). Returns how many recipients stopped."""
    if type not in ALWAYS_STOP and type not in (EventType.AUTO_REPLY, EventType.CLICK):
        return 0  # opens, deliveries and forwards never stop a sequence: no query
    rules = SequenceSettings.objects.filter(campaign_id=campaign_id).first()
    reason = ALWAYS_STOP.get(type)
    if type == EventType.AUTO_REPLY and rules is not None and rules.stop_on_auto_reply:
        reason = StopReason.AUTO_REPLIED
    if type == EventType.CLICK and rules is not None and rules.stop_on_click:
        reason = StopReason.CLICKED
    if reason is None:
        return 0
    this = Recipient.objects.filter(pk=recipient_id)
    stopped = sequence_stop(queryset=this, reason=reason)
    email, organization_id = this.values_list("email", "campaign__organization_id").first() or ("", None)
    if type in ORGANIZATION_WIDE and email and organization_id is not None:  # an email: the row was found
        # Only those between steps: unsent ones are failed at their claim by the suppression list.
        stopped += sequence_stop(
            queryset=Recipient.objects.filter(
                campaign__organization_id=organization_id, email=email, status=RecipientStatus.SENT
            ).exclude(pk=recipient_id),
            reason=reason,
        )
    if type == EventType.REPLY and rules is not None and rules.stop_company_on_reply:
        domain = email.rpartition("@")[2]
        if domain and domain not in FREE_MAIL_DOMAINS:
            stopped += sequence_stop(
                queryset=Recipient.objects.filter(campaign_id=campaign_id, email__endswith=f"@{domain}").exclude(
                    pk=recipient_id
                ),
                reason=StopReason.COMPANY_REPLIED,
            )
    return stopped


def sequence_on_click(*, recipient_id: int, campaign_id) -> int:
    """The public click URL's hot path records clicks in one statement: the click stop rule runs
    after it, and only costs a query when the campaign has sequence settings."""
    if connection.vendor != "postgresql":
        return 0  # the embedded run records clicks through event_record, which applies the rules
    return sequence_on_event(type=EventType.CLICK, recipient_id=recipient_id, campaign_id=campaign_id)


# --- A/B winner ----------------------------------------------------------------------------------


def sequence_pick_winners(*, campaign: Campaign, rules: SequenceSettings | None = None) -> list[StepVariant]:
    """For each step with variants and no winner yet, once it was sent `ab_winner_after` times,
    the variant with the best rate of the chosen metric becomes the only one sent from then on.

    Asked by each send batch that has an undecided step (so the rest of that step's recipients
    get the winner; the batches already under way finish with the split) and by the settler.
    A count on StepSend's index comes first, so the figures are computed once, when due. Two
    batches deciding at once cannot both win: one winner per step is a unique constraint."""
    from .sequence_stats import variant_stats

    rules = rules or SequenceSettings.objects.filter(campaign=campaign).first()
    if rules is None or not rules.ab_winner_after:
        return []
    decided = StepVariant.objects.filter(campaign=campaign, is_winner=True).values("step")
    open_steps = set(
        StepVariant.objects.filter(campaign=campaign).exclude(step__in=decided).values_list("step", flat=True)
    )
    if not open_steps:
        return []
    sent = dict(
        StepSend.objects.filter(campaign=campaign, step__in=open_steps).values_list("step").annotate(n=Count("id"))
    )
    ready = {step for step in open_steps if sent.get(step, 0) >= rules.ab_winner_after}
    if not ready:
        return []
    picked: list[StepVariant] = []
    metric = f"{rules.ab_winner_metric}_rate"
    for step in variant_stats(campaign_id=campaign.pk)["steps"]:
        labelled = [variant for variant in step["variants"] if variant["variant"]]
        if step["step"] not in ready or not labelled:
            continue
        best = max(labelled, key=lambda v: (v[metric], v["sent"], -ord(v["variant"][:1])))
        try:
            with transaction.atomic():  # a savepoint: losing the race leaves the caller's transaction usable
                StepVariant.objects.filter(campaign=campaign, step=step["step"], label=best["variant"]).update(
                    is_winner=True
                )
        except IntegrityError:
            continue  # another batch picked this step's winner first
        picked.extend(StepVariant.objects.filter(campaign=campaign, step=step["step"], label=best["variant"]))
    return picked
