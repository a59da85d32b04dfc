"""Fixtures of the pipeline tests. The pipeline runs on the sandbox providers; `drain` runs a
campaign's jobs in this process by calling the run_job task function, the `celery_worker` fixture
runs them on Celery's in-process test worker against the real Redis broker."""

import pytest
from celery.contrib.testing.worker import start_worker

from campaigns import tasks
from campaigns.models import Job
from campaigns.states import JobStatus
from campaigns_project.celery import app
from queue_control.models import QueueState
from tests.factories import CampaignFactory

SEARCH_URL = "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Germany"
NOBODY_URL = "https://app.apollo.io/#/people?qKeywords=nobody"


@pytest.fixture(autouse=True)
def queue_active(db):
    """The latch row, active (a transactional test before this one may have flushed it)."""
    QueueState.objects.update_or_create(pk=1, defaults={"state": QueueState.State.ACTIVE, "reason": ""})


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 0


@pytest.fixture
def campaign(org):
    # A high send rate: the shared token bucket would otherwise pace the test at one email a second.
    return CampaignFactory(organization=org, search_url=SEARCH_URL, lead_count=20, send_rate_per_minute=60_000)


def drain(campaign, *, rounds: int = 50) -> None:
    """Run the campaign's pending jobs until none is left (on_commit wake-ups do not fire inside a
    test transaction, so this stands in for the worker)."""
    for _ in range(rounds):
        pending = list(
            Job.objects.filter(campaign=campaign, status=JobStatus.PENDING).order_by("pk").values_list("pk", flat=True)
        )
        if not pending:
            return
        for job_id in pending:
            tasks.run_job(job_id)
    raise AssertionError(f"campaign {campaign.pk} still has pending jobs after {rounds} rounds")


@pytest.fixture
def celery_worker(transactional_db):
    """Celery's in-process worker on the real Redis broker (REDIS_URL), with a purged queue."""
    app.control.purge()
    with start_worker(app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker
