"""Celery tasks. They take ids and call one service; time limits, acks and prefetch are global
policy in settings (CELERY_*), queues are routed there too, retries of jobs are the runner's.

Periodic tasks (rows created by migrations, editable in the admin) run on the housekeeping queue
and respect the queue latch: while the queue is paused they make no provider call and start
nothing.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from integrations.errors import ProviderError
from queue_control.errors import QueuePaused
from queue_control.selectors import queue_is_active

from . import handlers
from .jobs import jobs_cleanup
from .models import Campaign
from .runner import campaign_kick, job_work
from .services import campaign_start
from .states import CampaignStatus
from .sweeper import engine_sweep

logger = logging.getLogger(__name__)

# A task whose database went away retries itself this often, this many times (about five
# minutes); after that the sweeper wakes the work once the database is back.
DATABASE_RETRY_SECONDS = 5
DATABASE_RETRIES = 60


def _retry_on_database_error(task, exc: DatabaseError):
    """A database error must not consume the message: retry the task (a new message) instead.
    Its job was handed back, or is taken back by the sweeper (runner.job_run)."""
    connection.close()
    logger.warning("%s: database error, retrying in %ss: %s", task.name, DATABASE_RETRY_SECONDS, exc)
    return task.retry(exc=exc, countdown=DATABASE_RETRY_SECONDS, max_retries=DATABASE_RETRIES)


@shared_task(bind=True)
def work(self, campaign_id: str, kind: str) -> str:
    """A wake-up: claim and run the campaign's next job on queue `kind` (pipeline or send)."""
    try:
        return job_work(campaign_id=campaign_id, kind=kind, task_id=self.request.id or "")
    except DatabaseError as exc:
        raise _retry_on_database_error(self, exc) from exc


@shared_task(bind=True)
def kick_campaign(self, campaign_id: str) -> dict:
    """Wake a resumed campaign's pending work (one message per campaign on a queue resume)."""
    try:
        return campaign_kick(campaign_id=campaign_id)
    except DatabaseError as exc:
        raise _retry_on_database_error(self, exc) from exc


@shared_task
def sweep() -> dict:
    """Every 20 s: take back lost workers' jobs, move stalled campaigns on, wake stranded work."""
    return engine_sweep()


@shared_task
def cleanup_old_jobs() -> dict:
    """Daily: delete final jobs older than JOB_RETENTION_DAYS (database only, no provider)."""
    return jobs_cleanup(older_than_days=settings.JOB_RETENTION_DAYS)


@shared_task
def launch_scheduled_campaigns() -> int:
    """Every minute: start the scheduled campaigns that are due. Nothing starts while the queue is
    paused; they start on the first run after the operator resumes it."""
    if not queue_is_active():
        return 0
    due = Campaign.objects.alive().filter(status=CampaignStatus.SCHEDULED, scheduled_at__lte=timezone.now())
    started = 0
    for campaign_id in due.values_list("pk", flat=True):  # each start is its own locked transition
        try:
            campaign_start(campaign_id=campaign_id, actor_label="beat")
            started += 1
        except ApplicationError as exc:
            logger.info("Scheduled campaign %s not started: %s", campaign_id, exc.message)
    return started


@shared_task
def sync_instantly_analytics() -> dict:
    """Every 15 minutes: fetch Instantly's figures for campaigns pushed there (running, paused, or
    completed within the retention period) into their InstantlyAnalytics rows, through the breaker.
    The only caller of Instantly's analytics: the API reads what this stored."""
    if not queue_is_active():
        return {"synced": 0, "errors": 0, "skipped": "queue paused"}
    recent = timezone.now() - timedelta(days=settings.JOB_RETENTION_DAYS)
    campaigns = (
        Campaign.objects.alive()
        .exclude(instantly_campaign_id="")
        .filter(Q(status__in=(CampaignStatus.RUNNING, CampaignStatus.PAUSED)) | Q(completed_at__gte=recent))
    )
    synced = errors = 0
    for campaign in campaigns.iterator():  # one provider call per campaign is what syncing means
        try:
            handlers.instantly_analytics_sync(campaign=campaign)
        except QueuePaused:
            break  # a breaker opened meanwhile: stop calling
        except ProviderError as exc:
            errors += 1
            logger.warning("Instantly analytics for campaign %s failed: %s", campaign.pk, exc)
            continue
        synced += 1
    return {"synced": synced, "errors": errors}
