"""The smtp outreach channel: the launcher that prepares the phase, the send_email job handler, the
settler that says when outreach is over, the recovery of a lost send job, and the test send.

At most once: a recipient is claimed (pending → sending) before SMTP and marked sent after. The
hand-over of one message is MAIL, RCPT, DATA and its content, then the end of DATA (".") that
commits it, then the server's answer. A connection lost before the "." delivers nothing (RFC 5321:
the server discards an unfinished transaction), so the recipient goes back to pending; only one
whose "." was sent and whose answer never came is uncertain: it stays in `sending`, shown to
operators, who decide. The send journal (tracking/journal.py) lets the sweeper tell these cases
apart after a worker was killed.
"""

import contextlib
import logging
import math
import re
import smtplib
import socket
from dataclasses import dataclass
from datetime import datetime
from time import monotonic, sleep

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.db import connection as db
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns.jobs import Heartbeat, JobDeferred, JobIncomplete, JobStopped, job_checkpoint, job_control
from campaigns.mailboxes import mailbox_failure_record, mailbox_pause
from campaigns.models import Campaign, Job, Mailbox
from campaigns.pipeline import phase_items_add
from campaigns.registry import (
    OutreachOutcome,
    PermanentJobError,
    RetryableJobError,
)
from campaigns.states import CampaignStatus, MailboxPauseKind, Phase
from campaigns.transitions import campaign_event_record
from campaigns_project.errors import ApplicationError
from integrations.errors import AuthError, ProviderConnectionError, ProviderError, ProviderTimeout, ServerError
from integrations.ratelimit import TokenBucket
from integrations.sandbox import failure_injected
from queue_control.errors import QueuePaused
from queue_control.guard import call_permit, failure_record

from . import clock, services
from .counters import counters_read
from .deliverability import deliverability_check_soon
from .journal import (
    JournalRefused,
    journal_close,
    journal_fenced,
    journal_open,
    journal_read,
    journal_record,
    journal_take_over,
)
from .mailboxes import (
    mailbox_connection,
    mailbox_daily_cap,
    mailbox_gap_bucket,
    paused_mailbox_ids,
    recipients_hand_off,
    recipients_rotate,
    seconds_to_next_day,
)
from .models import Recipient, SequenceSettings, StepSend, Suppression
from .rendering import (
    SAMPLE_LEAD,
    LinkRegistry,
    add_tracking,
    build_message,
    lead_context,
    recipient_context,
    render_content,
)
from .sequences import (
    sequence_arm_due,
    sequence_pick_winners,
    sequence_plan,
    sequence_waiting,
    sequence_window_closed,
    sequence_window_closed_until,
    sequence_window_holds,
    thread_of,
)
from .states import RecipientStatus

logger = logging.getLogger(__name__)

VERIFIED_EMAIL_STATUSES = ("valid", "catch_all")
# How often a send batch re-reads its job and campaign (a pause or cancel stops it between two
# messages) and flushes what was sent.
CONTROL_SECONDS = 0.25
# A wait for the campaign's rate limit longer than this hands the batch back instead of sleeping.
MAX_RATE_WAIT_SECONDS = 2.0
# Consecutive 4xx replies after which the batch backs off (the server is throttling us).
MAX_TRANSIENT_IN_A_ROW = 3
# A mailbox's daily cap reached: the batch hands back its recipients and looks again this often
# (the sweeper wakes it; no long countdown is parked in the broker).
CAPPED_RETRY_SECONDS = 300.0
UNCERTAIN = "Delivery uncertain: the message was committed but the server's answer never came"

# A 5xx that says the mailbox does not exist is a hard bounce: the address is suppressed. Other 5xx
# replies (policy, content, "mailbox unavailable", which RFC 5321 also uses for policy refusals)
# fail only this recipient, since suppressing on them would lose good addresses.
_USER_UNKNOWN = re.compile(
    r"\b5\.1\.(1|2|10)\b|user unknown|unknown user|no such (user|mailbox|recipient)|does not exist"
    r"|mailbox not found|recipient not found|invalid recipient|address not found",
    re.IGNORECASE,
)
_LEADING_DOT = re.compile(rb"(?m)^\.")


class MailboxCapped(Exception):
    """A mailbox reached its cap for today: its other recipients in the batch wait."""


class MailboxHeld(Exception):
    """A mailbox is paused and its campaign goes on from its other mailboxes: its recipients in
    the batch are given back (the unsent ones move to another mailbox) and the others go on."""


def is_hard_bounce(code: int, reply: str) -> bool:
    return code in (550, 551, 553) and bool(_USER_UNKNOWN.search(reply))


# --- SMTP calls --------------------------------------------------------------------------------


@dataclass
class Refusal:
    """The server refused this one message: a reply about the recipient, not about the service,
    so it is returned as a value and the smtp breaker does not count it."""

    code: int
    reply: str

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _provider_error(exc: Exception, *, delivery_uncertain: bool) -> ProviderError:
    """Service-level SMTP failures as the typed errors the breaker counts. `delivery_uncertain`
    says whether the server may have accepted the message before failing."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        error: ProviderError = AuthError("smtp", _text(exc.smtp_error), exc.smtp_code)
    elif isinstance(exc, socket.timeout | TimeoutError):
        error = ProviderTimeout("smtp", str(exc) or "timed out")
    elif isinstance(exc, smtplib.SMTPResponseException):
        error = ServerError("smtp", f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code)
    else:
        error = ProviderConnectionError("smtp", str(exc) or exc.__class__.__name__)
    error.delivery_uncertain = delivery_uncertain
    return error


def smtp_open(connection) -> None:
    if failure_injected("smtp"):
        error = ProviderConnectionError("smtp", "connection refused (failure injected by the operator)")
        error.delivery_uncertain = False
        raise error
    try:
        connection.open()
        smtp = getattr(connection, "connection", None)
        if isinstance(smtp, smtplib.SMTP) and smtp.sock is not None:
            # The end of DATA is a small write after the content: without this, Nagle's algorithm
            # holds it back until the content is acknowledged, which costs every message a delay.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=False) from exc


def smtp_handover(connection, message, *, before_commit=None) -> Refusal | None:
    """Hand one single-recipient message over an open connection; None when the server accepted
    it. `before_commit()` runs after the DATA command is sent, while the server answers it, and
    before any content or the end of DATA: if it raises, the connection is dropped without
    committing, and the server discards the message. (Its round trip, the commit permit in Redis,
    overlaps the DATA command's instead of adding one per message.)

    Speaks the SMTP dialogue itself (smtplib's sendmail sends the content and its final "." in
    one step) so that the instant of commitment is known. Backends without an SMTP connection
    (console, file, locmem) hand the message over in one step after `before_commit`."""
    smtp = getattr(connection, "connection", None)
    if not isinstance(smtp, smtplib.SMTP):
        if before_commit is not None:
            before_commit()
        connection.send_messages([message.as_email(connection)])
        return None
    sender, recipient = (
        address if address.isascii() else sanitize_address(address, "utf-8")
        for address in (message.envelope_from, message.to)
    )
    data = message.as_bytes()
    try:
        smtp.ehlo_or_helo_if_needed()
        options = [f"size={len(data)}"] if smtp.does_esmtp and smtp.has_extn("size") else []
        code, reply = smtp.mail(sender, options)
        if code != 250:
            # Our sender is refused: every message would be, so this is about the service.
            smtp.rset()
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            smtp.rset()
            return Refusal(code, _text(reply))
        smtp.putcmd("data")  # its answer is read after before_commit: the two round trips overlap
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=False) from exc
    if before_commit is not None:
        try:
            before_commit()
        except BaseException:
            # No content and no end of DATA: nothing is delivered. The socket is dropped, not QUIT:
            # after DATA a QUIT would be read as content, and wait for the timeout.
            with contextlib.suppress(Exception):
                smtp.close()
            connection.connection = None
            raise
    try:
        code, reply = smtp.getreply()
        if code != 354:
            smtp.rset()
            return Refusal(code, _text(reply))
        content = _LEADING_DOT.sub(b"..", data)
        smtp.send(content if content.endswith(b"\r\n") else content + b"\r\n")
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=False) from exc
    try:
        smtp.send(b".\r\n")
        code, reply = smtp.getreply()
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=True) from exc
    return None if code == 250 else Refusal(code, _text(reply))


# --- The launcher and the settler ---------------------------------------------------------------


def smtp_outreach_launch(*, campaign: Campaign) -> None:
    """Recipients from the verified leads minus the organization's suppression list, then one
    send_email job per SEND_BATCH_SIZE pending recipients. Runs in the pipeline's transaction."""
    if db.vendor == "postgresql":
        _recipients_insert_select(campaign)
    else:  # the embedded SQLite run: the rows pass through Python
        suppressed = Suppression.objects.filter(
            organization_id=campaign.organization_id, email=Lower(OuterRef("email"))
        )
        leads = (
            campaign.leads.filter(email_status__in=VERIFIED_EMAIL_STATUSES)
            .exclude(Exists(suppressed))
            .values_list("pk", "email")
        )
        Recipient.objects.bulk_create(
            (
                Recipient(campaign_id=campaign.pk, lead_id=pk, email=services.normalize_email(email))
                for pk, email in leads.iterator(chunk_size=2000)
            ),
            batch_size=1000,
            ignore_conflicts=True,  # recipients an operator added by hand stay as they are
        )
    recipients_rotate(campaign=campaign)  # each recipient's mailbox, when the campaign has mailboxes
    pending = campaign.recipients.filter(status=RecipientStatus.PENDING).count()
    services.send_jobs_create(campaign_id=campaign.pk, recipient_count=pending)


def _recipients_insert_select(campaign: Campaign) -> int:
    """The launcher's recipients in one INSERT … SELECT: a hundred thousand leads must not pass
    through Python inside the pipeline's transaction. Each token is two random UUIDs' hex, 244
    bits from PostgreSQL's strong random source (the tokens are the only guard of the public
    tracking URLs). ON CONFLICT DO NOTHING keeps recipients an operator added by hand."""
    qn = db.ops.quote_name
    recipient, lead, suppression = (qn(m._meta.db_table) for m in (Recipient, campaign.leads.model, Suppression))
    campaign_id = Recipient._meta.get_field("campaign").target_field.get_db_prep_value(campaign.pk, db)
    statuses = ", ".join(["%s"] * len(VERIFIED_EMAIL_STATUSES))
    # Only names from _meta and placeholders are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {recipient} (campaign_id, lead_id, email, status, token, message_id, last_error, "  # noqa: S608
        f"send_attempts, created_at) "
        f"SELECT l.campaign_id, l.id, lower(trim(l.email)), %s, "
        f"replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), '', '', 0, %s "
        f"FROM {lead} l WHERE l.campaign_id = %s AND l.email_status IN ({statuses}) "
        f"AND NOT EXISTS (SELECT 1 FROM {suppression} s WHERE s.organization_id = %s AND s.email = lower(l.email)) "
        f"ON CONFLICT DO NOTHING"
    )
    params = [RecipientStatus.PENDING, timezone.now(), campaign_id, *VERIFIED_EMAIL_STATUSES, campaign.organization_id]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def smtp_outreach_settle(*, campaign: Campaign) -> OutreachOutcome:
    """Every send job is final. Pending recipients left (a 4xx, a released batch) get more jobs,
    unless they used all their attempts; recipients still in `sending` wait for an operator; a
    campaign that sent nothing though it tried fails; otherwise outreach is done.

    A sequence first arms the recipients whose next step is due (tracking/sequences.py), and the
    phase waits while any recipient waits for a later step or its sending window: the sweeper asks
    again every ENGINE_SWEEP_SECONDS, so nothing is parked in the broker."""
    sequence_pick_winners(campaign=campaign)
    sequence_arm_due(campaign=campaign)
    now = clock.now()
    paused_mailboxes = paused_mailbox_ids(campaign=campaign)
    status_counts = dict(
        Recipient.objects.filter(campaign=campaign, status__in=(RecipientStatus.PENDING, RecipientStatus.SENDING))
        .exclude(status=RecipientStatus.PENDING, next_send_at__gt=now)
        .exclude(status=RecipientStatus.PENDING, stopped_at__isnull=False)
        .exclude(status=RecipientStatus.PENDING, mailbox_id__in=paused_mailboxes)  # they wait for it
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    if status_counts.get(RecipientStatus.PENDING):
        exhausted = services.recipients_transition(
            campaign_id=campaign.pk,
            to_status=RecipientStatus.FAILED,
            where=Q(
                status=RecipientStatus.PENDING,
                send_attempts__gte=settings.RECIPIENT_MAX_SEND_ATTEMPTS,
                stopped_at__isnull=True,
            )
            & ~Q(mailbox_id__in=paused_mailboxes)
            & (Q(next_send_at__isnull=True) | Q(next_send_at__lte=now)),  # the ones counted above
            last_error=f"Not sent: gave up after {settings.RECIPIENT_MAX_SEND_ATTEMPTS} attempts.",
        )
        phase_items_add(campaign_id=campaign.pk, phase=Phase.OUTREACH, failed=exhausted)
        remaining = status_counts[RecipientStatus.PENDING] - exhausted
        if remaining:
            services.send_jobs_create(campaign_id=campaign.pk, recipient_count=remaining, new_recipients=False)
            return OutreachOutcome(OutreachOutcome.MORE)
    uncertain = status_counts.get(RecipientStatus.SENDING, 0)
    if uncertain:
        return OutreachOutcome(
            OutreachOutcome.WAITING,
            f"Waiting for an operator: {uncertain} recipient{'s' if uncertain != 1 else ''} in sending, "
            f"delivery uncertain (a hand-over was cut off). Check the mail server's log, then release "
            f"them to be sent again, or mark them sent or failed.",
        )
    held = _held_by_paused_mailboxes(campaign=campaign, mailbox_ids=paused_mailboxes)
    if held:
        return OutreachOutcome(OutreachOutcome.WAITING, held)
    waiting, first_due = sequence_waiting(campaign=campaign)
    if waiting:
        return OutreachOutcome(
            OutreachOutcome.WAITING,
            f"Sequence: {waiting} recipient{'s' if waiting != 1 else ''} waiting for a later step or the sending "
            f"window; the next is due at {first_due:%Y-%m-%d %H:%M} UTC.",
        )
    counts = counters_read(campaign_id=campaign.pk)
    sent, failed, bounced = (
        counts.get(f"recipients.{s}", 0)
        for s in (RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.BOUNCED)
    )
    if not sent and failed + bounced:
        last_error = (
            Recipient.objects.filter(campaign=campaign, status__in=(RecipientStatus.FAILED, RecipientStatus.BOUNCED))
            .exclude(last_error="")
            .values_list("last_error", flat=True)
            .last()
        )
        return OutreachOutcome(
            OutreachOutcome.FAILED,
            f"No message was sent: all {failed + bounced} sends failed"
            + (f"; last error: {last_error}" if last_error else "."),
        )
    parts = [f"{sent} sent"]
    if failed:
        parts.append(f"{failed} failed")
    if bounced:
        parts.append(f"{bounced} bounced")
    return OutreachOutcome(OutreachOutcome.DONE, ", ".join(parts) if sent or failed or bounced else "nothing to send")


# --- The send_email job ------------------------------------------------------------------------


def recipients_claim(*, campaign_id, job_id: int, limit: int) -> list[int]:
    """Move up to `limit` of the campaign's pending recipients to sending for job `job_id`;
    return their ids.

    The conditional UPDATE is the claim: a row leaves `pending` once, so of two deliveries of the
    same job (or two jobs of the campaign) running at once, only the one whose UPDATE moved a row
    sends to it. SKIP LOCKED lets concurrent claims take disjoint rows instead of queueing on the
    same ones and then finding them gone. The MATERIALIZED CTE runs the LIMIT once (as a plain IN
    subquery PostgreSQL may re-run it per row and claim more than `limit`). Raw SQL because the
    ORM's update() returns no ids."""
    table = Recipient._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if db.features.has_select_for_update_skip_locked else ""
    probe_only = " OFFSET 0" if db.vendor == "postgresql" else ""  # SQLite has no OFFSET without LIMIT
    claimed_at = Recipient._meta.get_field("claimed_at").get_db_prep_value(timezone.now(), db)
    due = Recipient._meta.get_field("next_send_at").get_db_prep_value(clock.now(), db)
    campaign = Recipient._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, db)
    step_send = StepSend._meta.db_table
    mailbox = Mailbox._meta.db_table
    # Only the model's table names and a fixed clause are formatted in; every value is a parameter.
    # A recipient of a paused mailbox waits for its resume (its campaign goes on from the others).
    # A sequence's recipient is claimed only when its step is due, it has not stopped, and that
    # step was never recorded sent to it (the unique StepSend row, checked here before SMTP).
    # OFFSET 0 keeps that check a per-row probe of StepSend's unique index: as an anti-join, with
    # statistics taken while StepSend was small (a campaign's first minutes, autovacuum behind),
    # PostgreSQL scanned the whole index per candidate row, 2.3 s per claim at 18,000 rows.
    sql = (
        f"WITH claim AS MATERIALIZED (SELECT id FROM {table} r WHERE campaign_id = %s AND status = %s "  # noqa: S608
        f"AND send_attempts < %s AND stopped_at IS NULL AND (next_send_at IS NULL OR next_send_at <= %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {step_send} s WHERE s.recipient_id = r.id AND s.step = r.sequence_step"
        f"{probe_only}) "
        f"AND (r.mailbox_id IS NULL OR r.mailbox_id NOT IN (SELECT m.id FROM {mailbox} m WHERE m.pause_kind <> '')) "
        f"ORDER BY id LIMIT %s{skip_locked}) "
        f"UPDATE {table} SET status = %s, claimed_at = %s, send_job_id = %s, send_attempts = send_attempts + 1 "
        f"WHERE status = %s AND id IN (SELECT id FROM claim) RETURNING id"
    )
    pending, sending = RecipientStatus.PENDING, RecipientStatus.SENDING
    params = [campaign, pending, settings.RECIPIENT_MAX_SEND_ATTEMPTS, due, limit, sending, claimed_at, job_id]
    with db.cursor() as cursor:
        cursor.execute(sql, [*params, pending])
        return sorted(row[0] for row in cursor.fetchall())


def _send_bucket(campaign: Campaign) -> TokenBucket:
    per_minute = campaign.send_rate_per_minute
    # A burst of one second's worth: the limit holds across all workers sending this campaign.
    return TokenBucket(f"send:{campaign.pk}", per_minute / 60.0, max(1, per_minute // 60))


def _held_by_paused_mailboxes(*, campaign: Campaign, mailbox_ids: list[int]) -> str:
    """The campaign's status message while recipients wait for a paused mailbox (empty: none do)."""
    if not mailbox_ids:
        return ""
    held = dict(
        Recipient.objects.filter(
            campaign=campaign, status=RecipientStatus.PENDING, stopped_at__isnull=True, mailbox_id__in=mailbox_ids
        )
        .values_list("mailbox__name")
        .annotate(n=Count("pk"))
    )
    if not held:
        return ""
    count, names = sum(held.values()), ", ".join(sorted(held))
    recipients = "recipient" if count == 1 else "recipients"
    mailboxes = "mailbox" if len(held) == 1 else "mailboxes"
    return (
        f"Waiting for a mailbox: {count} {recipients} of paused {mailboxes} {names} (their thread goes "
        f"from it); resume the mailbox to send them."
    )[:500]


def _window_hand_back(*, campaign_id, job_id: int, ids, opens) -> int:
    """Claimed recipients outside their sending window back to pending, due at its opening, their
    attempt given back: nothing was handed over for them, so the release is safe."""
    return services.recipients_transition(
        campaign_id=campaign_id,
        to_status=RecipientStatus.PENDING,
        ids=ids,
        where=Q(status=RecipientStatus.SENDING, send_job_id=job_id),
        next_send_at=opens,
        claimed_at=None,
        send_job_id=None,
        send_attempts=F("send_attempts") - 1,
    )


def send_email_job(*, job: Job) -> dict:
    """Send one batch of a campaign's pending recipients through one SMTP connection."""
    campaign = Campaign.objects.get(pk=job.campaign_id)
    try:
        journal_open(job.pk, job.attempts)  # before the claim: a claim is never without its journal
    except redis.RedisError as exc:
        raise JobDeferred(f"The send journal cannot be written: {exc}", delay=5) from exc
    # No more than the campaign's rate lets this task send within its budget.
    rate = campaign.send_rate_per_minute / 60.0
    limit = min(settings.SEND_BATCH_SIZE, max(1, math.ceil(rate * settings.ENGINE_TASK_BUDGET_SECONDS)))
    rules = SequenceSettings.objects.filter(campaign=campaign).first()  # the window, one query
    if sequence_window_closed(campaign=campaign, rules=rules):
        journal_close(job.pk, job.attempts)
        return {**job.result, "claimed": 0, "sent": 0}
    ids = recipients_claim(campaign_id=campaign.pk, job_id=job.pk, limit=limit)
    held = sequence_window_holds(ids=ids, rules=rules)
    if held:
        with transaction.atomic():
            for opens, pks in held.items():
                _window_hand_back(campaign_id=campaign.pk, job_id=job.pk, ids=pks, opens=opens)
        kept = {pk for pks in held.values() for pk in pks}
        ids = [pk for pk in ids if pk not in kept]
    if not ids:
        journal_close(job.pk, job.attempts)
        return {**job.result, "claimed": 0, "sent": 0}
    return SendBatch(job, campaign, rules=rules).run(ids)


class SendBatch:
    """One SMTP connection, the claimed recipients in id order, the gate and the campaign's rate
    limit before each message, the journal before each commit, results flushed set-based."""

    def __init__(self, job: Job, campaign: Campaign, *, rules: SequenceSettings | None = None) -> None:
        self.job = job
        self.campaign = campaign
        self.bucket = _send_bucket(campaign)
        self.heartbeat = Heartbeat(job)
        self.deadline = monotonic() + settings.ENGINE_TASK_BUDGET_SECONDS
        self.plan = sequence_plan(campaign=campaign, rules=rules)  # steps, variants: read once per batch
        if self.plan.undecided() and sequence_pick_winners(campaign=campaign, rules=self.plan.rules):
            self.plan = sequence_plan(campaign=campaign, rules=self.plan.rules)  # the winner from now on
        self.postal_address = campaign.organization.postal_address
        self.threads: dict[int, list[tuple[int, str, str]]] = {}  # earlier steps sent, per recipient
        self.sent: dict[int, tuple[str, datetime]] = {}  # accepted, not yet in the database
        self.variants: dict[int, str] = {}  # the A/B variant each accepted message was
        self.untouched: set[int] = set()  # claimed, never committed: safe to release
        self.result = {key: int(job.result.get(key, 0)) for key in ("claimed", "sent", "failed", "bounced")}
        self.mailbox: Mailbox | None = None
        self.gap_bucket: TokenBucket | None = None
        self.window_closed = False  # the sending window closed under the batch: nothing more is sent

    def run(self, ids: list[int]) -> dict:
        self.result["claimed"] += len(ids)
        # Addresses suppressed since they were added (an unsubscribe from another campaign, a
        # manual entry) are failed, never mailed.
        suppressed = services.recipients_fail_suppressed(campaign=self.campaign, ids=ids)
        phase_items_add(campaign_id=self.campaign.pk, phase=Phase.OUTREACH, failed=suppressed)
        recipients = list(
            Recipient.objects.filter(pk__in=ids, status=RecipientStatus.SENDING)
            .select_related("lead", "mailbox")
            .order_by("id")
        )
        self.untouched = {recipient.pk for recipient in recipients}
        follow_ups = [recipient.pk for recipient in recipients if recipient.sequence_step > 1]
        self.threads = thread_of(recipient_ids=follow_ups) if follow_ups else {}
        links = LinkRegistry(self.campaign.pk)
        # One connection per sender mailbox (recipients without one: the settings' SMTP).
        by_mailbox: dict[int | None, list[Recipient]] = {}
        for recipient in recipients:
            by_mailbox.setdefault(recipient.mailbox_id, []).append(recipient)
        capped = ""
        held: list[Mailbox] = []
        self.journal_entry = ""  # the last acceptance, journaled with the next commit
        self.next_control = self.last_flush = monotonic()
        try:
            for group in by_mailbox.values():
                if self.window_closed:  # the other mailboxes' recipients went back to pending too
                    break
                mailbox = group[0].mailbox
                try:
                    self._send_from(mailbox, group, links)
                except MailboxCapped as exc:
                    capped = str(exc)  # this mailbox's other recipients wait; the others go on
                except MailboxHeld:
                    if mailbox is not None:  # always: only a mailbox is held
                        held.append(mailbox)  # paused, and the campaign goes on from the others
                except ProviderError:
                    # The error that opened the mailbox's breaker: the same, if the campaign goes on.
                    if mailbox is None or not self._held(mailbox):
                        raise
                    held.append(mailbox)
        finally:
            # If the database fails here the error goes up, and the journal stays for the sweeper.
            self._flush()
            # A capped or paused mailbox's recipients were never tried: their claim's attempt is
            # given back, or waiting for tomorrow's cap or the mailbox would use up their attempts.
            if journal_fenced(self.job.pk, self.job.attempts):
                # A recovery took this run for dead and took its recipients back; some may be
                # another run's by now. Only what was accepted (flushed above) is this run's.
                self.untouched.clear()
            self._release(sorted(self.untouched), give_back=bool(capped or held))
            journal_close(self.job.pk, self.job.attempts)
        for mailbox in held:  # what this batch gave back of it and nothing was sent to moves on
            recipients_hand_off(mailbox=mailbox, campaign_ids=[self.campaign.pk])
        if capped:
            raise JobDeferred(f"Not sent: {capped}.", delay=min(seconds_to_next_day(), CAPPED_RETRY_SECONDS))
        return dict(self.result)

    def _send_from(self, mailbox: Mailbox | None, recipients: list[Recipient], links: LinkRegistry) -> None:
        """The recipients of one mailbox (or of none) over one connection to its server."""
        self.mailbox = mailbox
        self.gap_bucket = mailbox_gap_bucket(mailbox) if mailbox is not None else None
        if mailbox is not None:
            mailbox.refresh_from_db(fields=["pause_kind", "pause_figure"])
            if mailbox.is_paused:
                self._mailbox_paused(mailbox)
        connection = mailbox_connection(mailbox)
        try:
            self._permit(rate_limited=False)  # opening the connection commits no message: no token
            try:
                smtp_open(connection)
            except ProviderError as exc:
                self._failure(exc)
                raise
            transient_in_a_row = 0
            for recipient in recipients:
                if monotonic() >= self.next_control:
                    self._control()
                    self.next_control = monotonic() + CONTROL_SECONDS
                    opens = sequence_window_closed_until(rules=self.plan.rules) if self.untouched else None
                    if opens is not None:
                        # The window closed under the batch: every recipient not handed over yet,
                        # of this mailbox and of the others, goes back to wait for its opening.
                        _window_hand_back(
                            campaign_id=self.campaign.pk, job_id=self.job.pk, ids=self.untouched, opens=opens
                        )
                        self.untouched.clear()
                        self.window_closed = True
                        break
                message, message_id, variant = self._message(recipient, links, connection)
                entries = [entry for entry in (self.journal_entry, f"b:{recipient.pk}") if entry]
                try:
                    refusal = smtp_handover(
                        connection, message, before_commit=lambda entries=entries: self._commit_permit(entries)
                    )
                except JournalRefused as exc:
                    raise JobStopped(f"Not sent: {exc}.") from exc
                except ProviderError as exc:
                    self._failure(exc)
                    if getattr(exc, "delivery_uncertain", True):
                        self.untouched.discard(recipient.pk)
                        Recipient.objects.filter(pk=recipient.pk).update(last_error=f"{UNCERTAIN}: {exc}")
                    raise
                self.untouched.discard(recipient.pk)
                self.journal_entry = ""
                if refusal is None:
                    self.sent[recipient.pk] = (message_id, clock.now())
                    self.variants[recipient.pk] = variant
                    self.journal_entry = f"s:{recipient.pk}:{message_id}"
                    transient_in_a_row = 0
                elif refusal.transient:
                    self._release([recipient.pk], error=f"{refusal.code} {refusal.reply}")
                    transient_in_a_row += 1
                    if transient_in_a_row >= MAX_TRANSIENT_IN_A_ROW:
                        raise RetryableJobError(f"SMTP {refusal.code} for {recipient.email}: {refusal.reply}")
                else:
                    self._refused(recipient, refusal)
                if (
                    monotonic() - self.last_flush >= settings.ENGINE_FLUSH_SECONDS
                    or len(self.sent) >= settings.ENGINE_FLUSH_ITEMS
                ):
                    self._flush()
                    self.last_flush = monotonic()
        finally:
            with contextlib.suppress(Exception):  # the connection is gone either way
                connection.close()

    def _failure(self, exc: ProviderError) -> None:
        """A service-level SMTP error counts against the mailbox's own breaker, or the smtp one."""
        if self.mailbox is not None:
            mailbox_failure_record(mailbox_id=self.mailbox.pk, error=exc)
        else:
            failure_record("smtp", exc)

    def _mailbox_paused(self, mailbox: Mailbox) -> None:
        """The mailbox is latched paused (its breaker, the deliverability guard): sweep its
        campaigns again (idempotent: a pause interrupted before its cascade is finished here),
        then stop like a queue pause, unless the campaign goes on from another mailbox."""
        mailbox_pause(
            mailbox_id=mailbox.pk, kind=mailbox.pause_kind or MailboxPauseKind.BREAKER, figure=mailbox.pause_figure
        )
        if self._campaign_running():
            raise MailboxHeld(mailbox.name)
        raise QueuePaused(f"Not sent: mailbox {mailbox.name} is paused.", service="smtp")

    def _held(self, mailbox: Mailbox) -> bool:
        """After an error of this mailbox: it is paused now and its campaign goes on."""
        mailbox.refresh_from_db(fields=["pause_kind", "pause_figure"])
        return mailbox.is_paused and self._campaign_running()

    def _campaign_running(self) -> bool:
        return Campaign.objects.filter(pk=self.campaign.pk, status=CampaignStatus.RUNNING).exists()

    def _control(self) -> None:
        if monotonic() > self.deadline and self.untouched:
            raise JobIncomplete(f"{len(self.untouched)} recipients left: time budget spent")
        self.heartbeat.beat()
        reason = job_control(self.job)
        if reason == "paused":
            raise QueuePaused("The job was paused.", service="smtp")
        if reason is not None:
            raise JobStopped(reason)

    def _commit_permit(self, entries: list[str]) -> None:
        """Before a message's content and end of DATA: the gate, the smtp breaker (or the mailbox's),
        the campaign's rate limit, the mailbox's daily cap and minimum gap, and the journal entry
        saying the commit begins, in one round trip. Refused, the message is not committed
        (smtp_handover drops the connection without the end of DATA)."""
        self._permit(record=journal_record(self.job.pk, self.job.attempts, *entries))

    def _permit(self, *, rate_limited: bool = True, record=None) -> None:
        buckets: list[TokenBucket | None]
        buckets, caps, breaker = [self.bucket] if rate_limited else [], [], None
        if self.mailbox is not None:
            breaker = self.mailbox.breaker_name
            if rate_limited:
                buckets.append(self.gap_bucket)
                caps.append(mailbox_daily_cap(self.mailbox))
        while True:
            permit = call_permit("smtp", buckets, record=record, caps=caps, breaker=breaker)
            if permit.granted:
                return
            if permit.unrecorded:
                raise JournalRefused(permit.refusal)
            if permit.unreachable:
                raise JobDeferred(f"Not sent: {permit.refusal}.", delay=5)
            if permit.capped and self.mailbox is not None:  # only a mailbox has a cap
                raise MailboxCapped(f"{self.mailbox.name}: {permit.refusal}")
            if permit.breaker_open and self.mailbox is not None:
                self._mailbox_paused(self.mailbox)
            if not permit.wait:
                raise QueuePaused(f"Not sent: {permit.refusal}.", service="smtp")
            if permit.wait > MAX_RATE_WAIT_SECONDS:
                raise JobDeferred(f"The campaign's send rate: next message in {permit.wait:.0f}s", delay=permit.wait)
            sleep(permit.wait)

    def _message(self, recipient: Recipient, links: LinkRegistry, connection):
        """The message of the recipient's current step (and A/B variant); a follow-up sent in
        the same thread answers the previous step's Message-ID. The envelope is build_message's,
        the same for every step."""
        step = recipient.sequence_step
        thread = self.threads.get(recipient.pk, [])
        if step > 1 and step not in self.plan.steps:
            raise PermanentJobError(f"Step {step} of the sequence no longer exists.")
        templates, variant = self.plan.templates_for(recipient.pk, step, {s: v for s, v, _ in thread})
        try:
            content = add_tracking(
                render_content(campaign=templates, context=recipient_context(recipient)),
                recipient=recipient,
                links=links,
                postal_address=self.postal_address,
            )
        except ValidationError as exc:
            raise PermanentJobError(f"Cannot render the campaign's templates: {exc.messages}") from exc
        message = build_message(campaign=self.campaign, content=content, to=recipient.email, recipient=recipient)
        earlier = [message_id for _, _, message_id in thread if message_id]
        if step > 1 and self.plan.steps[step].same_thread and earlier:
            message.headers["In-Reply-To"] = earlier[-1]
            message.headers["References"] = " ".join(earlier)
        return message, message.message_id, variant

    def _refused(self, recipient: Recipient, refusal: Refusal) -> None:
        hard = is_hard_bounce(refusal.code, refusal.reply)
        services.recipient_bounce_on_send(recipient=recipient, error=f"{refusal.code} {refusal.reply}", suppress=hard)
        phase_items_add(campaign_id=self.campaign.pk, phase=Phase.OUTREACH, failed=1)
        self.result["bounced" if hard else "failed"] += 1

    def _flush(self) -> None:
        if not self.sent:
            return
        with transaction.atomic():
            self.result["sent"] += services.recipients_mark_sent(
                campaign_id=self.campaign.pk, job_id=self.job.pk, sent=self.sent, variants=self.variants
            )
            job_checkpoint(self.job, **self.result)
        self.sent, self.variants = {}, {}
        self.heartbeat.last = monotonic()
        # More sends can take a figure over its minimum: the guard looks again (throttled).
        deliverability_check_soon(campaign_id=self.campaign.pk, mailbox_id=self.mailbox.pk if self.mailbox else None)

    def _release(self, ids: list[int], *, error: str = "", give_back: bool = False) -> None:
        if ids:
            fields: dict = {"claimed_at": None, "send_job_id": None}
            if error:
                fields["last_error"] = error
            if give_back:
                fields["send_attempts"] = F("send_attempts") - 1
            # Only while this job still holds them: after a recovery took them back they may be
            # another job's now.
            services.recipients_transition(
                campaign_id=self.campaign.pk,
                to_status=RecipientStatus.PENDING,
                ids=ids,
                where=Q(status=RecipientStatus.SENDING, send_job_id=self.job.pk),
                **fields,
            )
            self.untouched.difference_update(ids)


def send_job_recover(*, job: Job) -> str:
    """A send job lost its worker. From its journal: accepted messages are marked sent, the
    recipient whose commit began without an answer stays in `sending` (uncertain), and every
    other recipient the job had claimed goes back to pending. Without a journal (Redis lost it)
    nothing can be told apart: they all stay in `sending`, for an operator. Returns a note for the
    job's last error."""
    claimed = Recipient.objects.filter(send_job_id=job.pk, status=RecipientStatus.SENDING)
    if not claimed.exists():
        with contextlib.suppress(redis.RedisError):  # fenced all the same: a stalled run stays stopped
            journal_take_over(job.pk, job.attempts)
        journal_close(job.pk, job.attempts)
        return ""
    entries = journal_take_over(job.pk, job.attempts)
    if entries is None:
        count = claimed.update(last_error="Delivery uncertain: its send job's worker and journal were both lost.")
        return f"{count} recipient(s) left in sending: the send journal was lost."
    sent, begun = journal_read(entries)
    now = timezone.now()
    with transaction.atomic():
        marked = services.recipients_mark_sent(
            campaign_id=job.campaign_id, job_id=job.pk, sent={pk: (mid, now) for pk, mid in sent.items()}
        )
        uncertain = claimed.filter(pk__in=begun - set(sent)).update(last_error=f"{UNCERTAIN} (its worker was lost).")
        released = services.recipients_transition(
            campaign_id=job.campaign_id,
            to_status=RecipientStatus.PENDING,
            where=Q(send_job_id=job.pk, status=RecipientStatus.SENDING) & ~Q(pk__in=begun),
            claimed_at=None,
            send_job_id=None,
        )
    journal_close(job.pk, job.attempts)
    return f"From its send journal: {marked} marked sent, {released} back to pending, {uncertain} uncertain."


# --- The test send -----------------------------------------------------------------------------


def campaign_test_mailbox(campaign: Campaign) -> Mailbox | None:
    """The mailbox a test send goes from when none is named: the campaign's first active mailbox
    that is not paused (the first its recipients would be given), or None for a campaign without
    mailboxes (the settings' sender, as its messages). Every mailbox paused: refused."""
    mailboxes = list(campaign.mailboxes.filter(active=True).order_by("pk"))
    if not mailboxes:
        return None
    for mailbox in mailboxes:
        if not mailbox.is_paused:
            return mailbox
    raise ApplicationError("Cannot send a test: every mailbox of the campaign is paused.")


def campaign_send_test(*, campaign: Campaign, to: str, actor=None, mailbox: Mailbox | None = None) -> str:
    """One rendered sample to `to`: the campaign's first lead (or sample values) as variables, no
    tracking, no Recipient row, from `mailbox` (one of the campaign's; default
    campaign_test_mailbox) over its own server, behind its own breaker. Returns the Message-ID."""
    if mailbox is None:
        mailbox = campaign_test_mailbox(campaign)
    lead = campaign.leads.order_by("id").first()
    content = render_content(campaign=campaign, context=lead_context(lead) if lead else dict(SAMPLE_LEAD))
    content.subject = f"[Test] {content.subject}"
    message = build_message(campaign=campaign, content=content, to=to, mailbox=mailbox)
    permit = call_permit("smtp", breaker=mailbox.breaker_name if mailbox is not None else None)
    if not permit.granted:
        raise ApplicationError(f"Cannot send a test: {permit.refusal}.")
    connection = mailbox_connection(mailbox)
    try:
        smtp_open(connection)
        refusal = smtp_handover(connection, message)
    except ProviderError as exc:
        if mailbox is not None:
            mailbox_failure_record(mailbox_id=mailbox.pk, error=exc)
        else:
            failure_record("smtp", exc)
        raise
    finally:
        connection.close()
    if refusal is not None:
        raise ApplicationError(f"The mail server refused the test message: {refusal.code} {refusal.reply}")
    sender = f" from mailbox {mailbox.name}" if mailbox is not None else ""
    campaign_event_record(campaign=campaign, action="tracking.test_sent", actor=actor, reason=f"to {to}{sender}")
    return message.message_id
