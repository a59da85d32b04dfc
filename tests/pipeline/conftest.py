"""Fixtures of the pipeline tests. The pipeline runs on the sandbox providers; `drain` runs a
campaign's jobs in this process as the workers' wake-ups would, the `celery_worker` fixture
runs them on Celery's in-process test worker against the real Redis broker."""

import pytest
from celery.contrib.testing.worker import start_worker

from campaigns.models import Job
from campaigns.runner import job_work
from campaigns.states import QUEUE_JOB_TYPES, JobStatus
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


def drain(campaign, *, rounds: int = 500) -> None:
    """Run the campaign's jobs until none is left, as the workers' wake-ups would (on_commit
    wake-ups do not fire inside a test transaction, so this stands in for the workers). A retry's
    wait (run_after) is skipped."""
    for _ in range(rounds):
        outcomes = [job_work(campaign_id=campaign.pk, kind=kind) for kind in QUEUE_JOB_TYPES]
        if all(outcome == "nothing to claim" for outcome in outcomes):
            waiting = Job.objects.active().filter(campaign=campaign, status=JobStatus.PENDING)
            if not waiting.filter(run_after__isnull=False).update(run_after=None):
                return
    raise AssertionError(f"campaign {campaign.pk} still has pending jobs after {rounds} rounds")


@pytest.fixture
def sent_messages(monkeypatch):
    """The Celery messages the code would send (task name, args, queue kind), captured instead."""
    sent: list = []
    monkeypatch.setattr(
        "campaigns.dispatch._send", lambda task, args, *, kind, countdown=None: sent.append((task, args, kind))
    )
    return sent


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Runs the on_commit callbacks of the block (the latch mirror, wake-ups) as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def celery_worker(transactional_db):
    """Celery's in-process worker on the real Redis broker (REDIS_URL), consuming every queue of
    this installation (the test settings' own), purged first."""
    app.control.purge()
    with start_worker(app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker
