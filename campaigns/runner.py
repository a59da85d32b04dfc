"""What a wake-up does: claim the campaign's next job on its queue, run its handler, record the
outcome, and pass the wake-up on while work is left.

Outcomes, by what the handler raised:
- nothing: completed (and counted into its phase, which may end it);
- QueuePaused: the queue paused under it, so the job is paused and waits for the queue resume
  (or, if Redis could not be read at all, goes back to pending for a few seconds);
- a provider error that trips at once (credit or quota gone): paused too, with the error;
- JobIncomplete: its time budget is spent, it continues at once in another task;
- JobStopped: its campaign was paused or cancelled meanwhile, it waits for the campaign;
- JobDeferred: it waits a little (an Instantly campaign not created yet, a far rate limit);
- PermanentJobError or a refused input: failed;
- anything else: retried with a short backoff, failed after JOB_MAX_ATTEMPTS;
- a database error: the job is handed back if the database allows, and the error goes up to the
  task, which retries itself instead of being consumed (campaigns/tasks.py).
"""

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Q
from django.utils import timezone

from integrations.errors import BadRequestError, ProviderError
from queue_control.errors import QueuePaused
from queue_control.services import queue_pause_for_open_breakers

from .dispatch import wake
from .jobs import (
    JobDeferred,
    JobIncomplete,
    JobStopped,
    job_claim,
    job_finish,
    job_pause,
    job_release,
    jobs_claimable,
    retry_delay,
)
from .models import Campaign, Job
from .pipeline import pipeline_advance
from .registry import JOB_HANDLERS, PermanentJobError, RetryableJobError
from .states import JOB_QUEUE, QUEUE_JOB_TYPES, CampaignStatus, JobStatus

logger = logging.getLogger(__name__)

# Outcomes after which this worker passes its wake-up on to the campaign's next job.
_PASS_ON = ("completed", "failed", "continued", "retry", "deferred")


def job_work(*, campaign_id, kind: str, task_id: str = "") -> str:
    """Claim and run the campaign's next job on queue `kind`; returns what happened, for logs."""
    job = job_claim(campaign_id=campaign_id, job_types=QUEUE_JOB_TYPES[kind], task_id=task_id)
    if job is None:
        return "nothing to claim"
    outcome = job_run(job)
    if outcome in _PASS_ON and _more_work(campaign_id, kind):
        wake(campaign_id, kind)
    return outcome


def _more_work(campaign_id, kind: str) -> bool:
    """Claimable work is left, and fewer jobs than the campaign's parallelism are running."""
    now = timezone.now()
    due = Q(run_after__isnull=True) | Q(run_after__lte=now)
    counts = (
        Job.objects.active()
        .filter(campaign_id=campaign_id, job_type__in=QUEUE_JOB_TYPES[kind])
        .aggregate(
            claimable=Count("pk", filter=Q(status=JobStatus.PENDING) & due),
            running=Count("pk", filter=Q(status=JobStatus.PROCESSING)),
        )
    )
    return counts["claimable"] > 0 and counts["running"] < settings.ENGINE_CAMPAIGN_PARALLELISM


def job_run(job: Job) -> str:
    """Call the claimed job's handler and record the outcome."""
    handler = JOB_HANDLERS.get(job.job_type)
    try:
        if handler is None:
            raise PermanentJobError(f"No handler is registered for {job.job_type} jobs.")
        result = handler(job=job)
    except DatabaseError:
        _hand_back_after_database_error(job)
        raise
    except Exception as exc:
        return _job_failed(job, exc)
    job_finish(job=job, status=JobStatus.COMPLETED, result=result or {})
    return "completed"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _job_failed(job: Job, exc: Exception) -> str:
    error = _describe(exc)
    if isinstance(exc, QueuePaused):
        if exc.unreachable:
            job_release(job, delay=5, error=error)
            return "deferred"
        job_pause(job)
        _pause_finish()
        return "paused"
    if isinstance(exc, ProviderError) and exc.trips_immediately:
        # Out of credit: the guard opened the breaker, which paused the queue and this job.
        # Retrying cannot help; the job waits, paused, for an operator to resume the queue.
        job_pause(job, error=error)
        _pause_finish()
        return "paused"
    if isinstance(exc, JobIncomplete):
        job_release(job)
        return "continued"
    if isinstance(exc, JobStopped):
        job_release(job)
        return "stopped"
    if isinstance(exc, JobDeferred):
        if job_release(job, delay=exc.delay, error=error):
            wake(job.campaign_id, JOB_QUEUE[job.job_type], countdown=exc.delay)
        return "deferred"
    if isinstance(exc, PermanentJobError | BadRequestError):
        job_finish(job=job, status=JobStatus.FAILED, error=error)
        return "failed"
    if not isinstance(exc, RetryableJobError | ProviderError):
        # A programming error, or Celery's soft time limit (a handler that ignored its budget).
        logger.exception("Job %s (%s) raised an unexpected error", job.pk, job.job_type, exc_info=exc)
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        job_finish(job=job, status=JobStatus.FAILED, error=f"{error} (gave up after {job.attempts} attempts)")
        return "failed"
    delay = retry_delay(job.attempts, retry_after=getattr(exc, "retry_after", None))
    if job_release(job, delay=delay, error=error, count_attempt=True):
        wake(job.campaign_id, JOB_QUEUE[job.job_type], countdown=delay)
    return "retry"


def _pause_finish() -> None:
    """The gate refused the job's call. If that was an open breaker whose queue pause was lost,
    pause the queue now, so the job's campaign does not stay running with nothing running it."""
    try:
        queue_pause_for_open_breakers()
    except Exception:
        logger.exception("Could not check the queue against the open breakers; the sweeper will")


def _hand_back_after_database_error(job: Job) -> None:
    """The database failed under the job (a restart, a dropped connection). Try once, on a new
    connection, to put it back to pending so it runs again at once when the database is back; if
    that fails too, the sweeper takes it back once its heartbeat is stale."""
    connection.close()
    try:
        job_release(job, error="Interrupted by a database error.")
    except DatabaseError:
        connection.close()
        logger.warning("Job %s stays in processing until the sweeper takes it back", job.pk)


def campaign_kick(*, campaign_id) -> dict[str, int]:
    """Wake whatever a running campaign has pending (after a resume), and move it on if its phase
    ended while it was paused. Returns the wake-ups sent per queue."""
    pipeline_advance(campaign_id=campaign_id)
    if not Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).exists():
        return {}
    woken = {}
    for kind, job_types in QUEUE_JOB_TYPES.items():
        claimable = jobs_claimable(campaign_id=campaign_id, job_types=job_types)
        if claimable:
            wake(campaign_id, kind, count=claimable)
            woken[kind] = min(claimable, settings.ENGINE_CAMPAIGN_PARALLELISM)
    return woken
