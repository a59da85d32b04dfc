"""Celery tasks. They take ids and call one service; time limits, acks and prefetch are global
policy in settings (CELERY_*), retries are the job runner's (jobs.py).

Periodic tasks (rows created by migration 0003, editable in the admin) respect the queue latch:
while the queue is paused they make no provider call and start nothing.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from campaigns_project.errors import ApplicationError
from integrations.errors import ProviderError
from queue_control.errors import QueuePaused
from queue_control.selectors import queue_is_active

from . import handlers
from .jobs import job_run, jobs_cleanup, jobs_reap_stuck
from .models import Campaign, Job
from .pipeline import pipeline_advance
from .services import campaign_start
from .states import CampaignStatus, JobStatus

logger = logging.getLogger(__name__)

# Messages sent per dispatch_campaign task: a million pending jobs become a chain of short tasks
# rather than one that outlives its time limit.
DISPATCH_CHUNK = 1000


@shared_task(bind=True)
def run_job(self, job_id: int) -> str:
    return job_run(job_id, task_id=self.request.id or "")


@shared_task
def dispatch_campaign(campaign_id: str, after_id: int = 0) -> int:
    """Enqueue run_job for the pending jobs of a running campaign, DISPATCH_CHUNK at a time (used
    on resume and when a phase fans out). Returns how many were enqueued by this task."""
    if not Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).exists():
        return 0
    job_ids = list(
        Job.objects.active()
        .filter(campaign_id=campaign_id, status=JobStatus.PENDING, pk__gt=after_id)
        .order_by("pk")
        .values_list("pk", flat=True)[:DISPATCH_CHUNK]
    )
    for job_id in job_ids:  # one message per job: each is a separate unit of work
        run_job.delay(job_id)
    if len(job_ids) == DISPATCH_CHUNK:
        dispatch_campaign.delay(campaign_id, after_id=job_ids[-1])
    elif not job_ids and not after_id:
        # Nothing pending: the phase may have ended while the campaign was paused.
        pipeline_advance(campaign_id=campaign_id)
    return len(job_ids)


@shared_task
def cleanup_old_jobs() -> dict:
    """Daily: delete final jobs older than JOB_RETENTION_DAYS (database only, no provider)."""
    return jobs_cleanup(older_than_days=settings.JOB_RETENTION_DAYS)


@shared_task
def reap_stuck_jobs() -> dict:
    """Every minute: jobs whose worker was lost go back to pending (their claim then waits for the
    queue and the campaign), or fail after JOB_MAX_ATTEMPTS."""
    return jobs_reap_stuck()


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
    completed within the retention period) and keep the latest as their sync_analytics job."""
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
            analytics = handlers.instantly_analytics_fetch(campaign=campaign)
        except QueuePaused:
            break  # a breaker opened meanwhile: stop calling
        except ProviderError as exc:
            errors += 1
            logger.warning("Instantly analytics for campaign %s failed: %s", campaign.pk, exc)
            continue
        handlers.instantly_analytics_store(campaign=campaign, analytics=analytics)
        synced += 1
    return {"synced": synced, "errors": errors}
