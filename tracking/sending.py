"""The smtp outreach channel: the launcher that prepares the phase, the send_email job handler, and
the test send.

At most once: a recipient is claimed (pending -> sending) before SMTP and marked sent right after.
Only recipients never handed to the mail server go back to pending. One whose hand-over was cut off
(lost connection, killed worker) stays in `sending`, since the server may have accepted it: the
admin reports it and an operator decides.
"""

import logging
import re
import smtplib
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.db import connection as db
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns.jobs import JobIncomplete
from campaigns.models import Campaign
from campaigns.registry import PermanentJobError, RetryableJobError, job_handler, outreach_launcher
from campaigns.states import CampaignStatus
from campaigns.transitions import campaign_event_record
from campaigns_project.errors import ApplicationError
from integrations.errors import AuthError, ProviderConnectionError, ProviderError, ProviderTimeout, ServerError
from integrations.ratelimit import TokenBucket
from integrations.sandbox import failure_injected
from queue_control.errors import QueuePaused
from queue_control.guard import guarded_call

from . import services
from .models import Recipient, Suppression
from .rendering import (
    SAMPLE_LEAD,
    LinkRegistry,
    add_tracking,
    build_message,
    lead_context,
    recipient_context,
    render_content,
)
from .states import RecipientStatus

logger = logging.getLogger(__name__)

VERIFIED_EMAIL_STATUSES = ("valid", "catch_all")

# A 5xx that says the mailbox does not exist is a hard bounce: the address is suppressed. Other 5xx
# replies (policy, content, "mailbox unavailable", which RFC 5321 also uses for policy refusals)
# fail only this recipient, since suppressing on them would lose good addresses.
_USER_UNKNOWN = re.compile(
    r"\b5\.1\.(1|2|10)\b|user unknown|unknown user|no such (user|mailbox|recipient)|does not exist"
    r"|mailbox not found|recipient not found|invalid recipient|address not found",
    re.IGNORECASE,
)


def is_hard_bounce(code: int, reply: str) -> bool:
    return code in (550, 551, 553) and bool(_USER_UNKNOWN.search(reply))


# --- SMTP calls (each one runs under guarded_call("smtp", ...)) ---------------------------------


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
    tells the send loop whether the server may have accepted the message before failing."""
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
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=False) from exc


def smtp_send(connection, message) -> Refusal | None:
    """Hand one message over the open connection. None when the server accepted it."""
    try:
        connection.send_messages([message])
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        return Refusal(code, _text(reply))
    except smtplib.SMTPDataError as exc:
        return Refusal(exc.smtp_code, _text(exc.smtp_error))
    except smtplib.SMTPSenderRefused as exc:  # our sender is refused: every message would be
        raise _provider_error(exc, delivery_uncertain=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise _provider_error(exc, delivery_uncertain=True) from exc
    return None


# --- The launcher ------------------------------------------------------------------------------


@outreach_launcher("smtp")
def smtp_outreach_launch(*, campaign: Campaign) -> list[int]:
    """Recipients from the verified leads minus the organization's suppression list, then one
    send_email job per SEND_BATCH_SIZE pending recipients. Runs in the pipeline's transaction,
    which enqueues the returned job ids."""
    suppressed = Suppression.objects.filter(organization_id=campaign.organization_id, email=Lower(OuterRef("email")))
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
    pending = campaign.recipients.filter(status=RecipientStatus.PENDING).count()
    return services.send_jobs_create(campaign_id=campaign.pk, recipient_count=pending)


# --- The send_email job ------------------------------------------------------------------------


def recipients_claim(*, campaign_id, limit: int) -> list[int]:
    """Move up to `limit` of the campaign's pending recipients to sending; return their ids.

    The conditional UPDATE is the claim: a row leaves `pending` once, so of two deliveries of the
    same job (or two jobs of the campaign) running at once, only the one whose UPDATE moved a row
    sends to it. SKIP LOCKED lets concurrent claims take disjoint rows instead of queueing on the
    same ones and then finding them gone. The MATERIALIZED CTE runs the LIMIT once (as a plain IN
    subquery PostgreSQL may re-run it per row and claim more than `limit`). Raw SQL because the
    ORM's update() returns no ids."""
    table = Recipient._meta.db_table
    skip_locked = " FOR UPDATE SKIP LOCKED" if db.features.has_select_for_update_skip_locked else ""
    claimed_at = Recipient._meta.get_field("claimed_at").get_db_prep_value(timezone.now(), db)
    campaign = Recipient._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, db)
    # Only the model's table name and a fixed clause are formatted in; every value is a parameter.
    sql = (
        f"WITH claim AS MATERIALIZED (SELECT id FROM {table} WHERE campaign_id = %s AND status = %s "  # noqa: S608
        f"ORDER BY id LIMIT %s{skip_locked}) "
        f"UPDATE {table} SET status = %s, claimed_at = %s WHERE status = %s AND id IN (SELECT id FROM claim) "
        f"RETURNING id"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [campaign, "pending", limit, "sending", claimed_at, "pending"])
        return sorted(row[0] for row in cursor.fetchall())


class _SendBudgetExceeded(Exception):
    pass


def _wait_for_send_slot(bucket, deadline: float) -> None:
    """Wait for the campaign's shared rate limit, or give up when the wait would outlast the job."""
    while True:
        wait = bucket.try_acquire()
        if wait <= 0:
            return
        if time.monotonic() + wait > deadline:
            raise _SendBudgetExceeded
        time.sleep(wait)


def _send_bucket(campaign: Campaign):
    per_minute = campaign.send_rate_per_minute
    # A burst of one second's worth: the limit holds across all workers sending this campaign.
    return TokenBucket(f"send:{campaign.pk}", per_minute / 60.0, max(1, per_minute // 60))


@job_handler("send_email")
def send_email_job(*, job) -> dict:
    """Send one batch of a campaign's pending recipients through one SMTP connection."""
    campaign = Campaign.objects.get(pk=job.campaign_id)
    services.recipients_fail_suppressed(campaign=campaign)
    ids = recipients_claim(campaign_id=campaign.pk, limit=settings.SEND_BATCH_SIZE)
    if not ids:
        return {"claimed": 0, "sent": 0}
    return _send_batch(campaign=campaign, recipient_ids=ids)


def _send_batch(*, campaign: Campaign, recipient_ids: list[int]) -> dict:
    recipients = list(Recipient.objects.filter(pk__in=recipient_ids).select_related("lead").order_by("id"))
    untouched = {r.pk for r in recipients}  # claimed but never handed to the server: safe to release
    result = {"claimed": len(recipients), "sent": 0, "failed": 0, "bounced": 0}
    # Stop early enough to release the rest cleanly before Celery's soft time limit.
    deadline = time.monotonic() + settings.CELERY_TASK_SOFT_TIME_LIMIT * 0.8
    bucket = _send_bucket(campaign)
    links = LinkRegistry(campaign.pk)
    connection = get_connection()
    try:
        guarded_call("smtp", smtp_open, connection)
        for recipient in recipients:
            status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
            if status != CampaignStatus.RUNNING:  # paused or cancelled mid-batch: start nothing more
                result["stopped"] = status
                break
            _wait_for_send_slot(bucket, deadline)
            try:
                content = add_tracking(
                    render_content(campaign=campaign, context=recipient_context(recipient)),
                    recipient=recipient,
                    links=links,
                )
            except ValidationError as exc:
                raise PermanentJobError(f"Cannot render the campaign's templates: {exc.messages}") from exc
            message, message_id = build_message(
                campaign=campaign, content=content, to=recipient.email, recipient=recipient, connection=connection
            )
            untouched.discard(recipient.pk)
            try:
                refusal = guarded_call("smtp", smtp_send, connection, message)
            except QueuePaused:
                untouched.add(recipient.pk)  # the gate refused before any SMTP call
                raise
            except ProviderError as exc:
                if not getattr(exc, "delivery_uncertain", True):
                    untouched.add(recipient.pk)
                else:
                    Recipient.objects.filter(pk=recipient.pk).update(last_error=f"Delivery uncertain: {exc}")
                raise
            if refusal is None:
                services.recipients_transition(
                    campaign_id=campaign.pk,
                    to_status=RecipientStatus.SENT,
                    ids=[recipient.pk],
                    message_id=message_id,
                    sent_at=timezone.now(),
                    last_error="",
                )
                result["sent"] += 1
            elif refusal.transient:
                services.recipients_transition(
                    campaign_id=campaign.pk,
                    to_status=RecipientStatus.PENDING,
                    ids=[recipient.pk],
                    claimed_at=None,
                    last_error=f"{refusal.code} {refusal.reply}",
                )
                raise RetryableJobError(f"SMTP {refusal.code} for {recipient.email}: {refusal.reply}")
            else:
                hard = is_hard_bounce(refusal.code, refusal.reply)
                services.recipient_bounce_on_send(
                    recipient=recipient, error=f"{refusal.code} {refusal.reply}", suppress=hard
                )
                result["bounced" if hard else "failed"] += 1
    except _SendBudgetExceeded:
        result["stopped"] = "rate limit"
    finally:
        connection.close()
        if untouched:
            services.recipients_transition(
                campaign_id=campaign.pk, to_status=RecipientStatus.PENDING, ids=untouched, claimed_at=None
            )
    if untouched and result.get("stopped") in ("rate limit", CampaignStatus.PAUSED):
        # The job goes back to pending without using an attempt: it runs again at once (rate limit)
        # or, for a paused campaign, its claim waits for the resume.
        raise JobIncomplete(f"{len(untouched)} recipients left: {result['stopped']}")
    result["released"] = len(untouched)
    return result


# --- The test send -----------------------------------------------------------------------------


def campaign_send_test(*, campaign: Campaign, to: str, actor=None) -> str:
    """One rendered sample to `to`: the campaign's first lead (or sample values) as variables, no
    tracking, no Recipient row. Returns the Message-ID."""
    lead = campaign.leads.order_by("id").first()
    content = render_content(campaign=campaign, context=lead_context(lead) if lead else dict(SAMPLE_LEAD))
    content.subject = f"[Test] {content.subject}"
    message, message_id = build_message(campaign=campaign, content=content, to=to)
    connection = get_connection()
    try:
        guarded_call("smtp", smtp_open, connection)
        refusal = guarded_call("smtp", smtp_send, connection, message)
    except QueuePaused as exc:
        raise ApplicationError(f"Cannot send a test: {exc}") from exc
    finally:
        connection.close()
    if refusal is not None:
        raise ApplicationError(f"The mail server refused the test message: {refusal.code} {refusal.reply}")
    campaign_event_record(campaign=campaign, action="tracking.test_sent", actor=actor, reason=f"to {to}")
    return message_id
