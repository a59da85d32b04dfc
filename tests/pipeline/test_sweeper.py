"""The sweeper: lost workers' jobs are taken back, stalled campaigns move on, stranded work is woken
again, all without an operator."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import jobs, sweeper, tasks
from campaigns.handlers import call_with_heartbeat
from campaigns.models import CampaignPhase, Job
from campaigns.states import JobStatus, JobType, Phase
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory, LeadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(org):
    campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
    now = timezone.now()
    CampaignPhase.objects.create(campaign=campaign, phase=Phase.VERIFICATION, started_at=now, updated_at=now)
    return campaign


@pytest.fixture
def woken(monkeypatch):
    sent = []

    def wake(campaign_id, kind, *, count=1, countdown=None):
        sent.append((str(campaign_id), kind, count))

    monkeypatch.setattr(jobs, "wake", wake)
    monkeypatch.setattr(sweeper, "wake", wake)
    monkeypatch.setattr("campaigns.pipeline.wake", wake)
    return sent


@pytest.fixture
def kicked(monkeypatch):
    sent = []
    monkeypatch.setattr(sweeper, "campaigns_kick", lambda ids: sent.extend(str(i) for i in ids))
    return sent


def age(job, **delta):
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(**delta))


def verify_job(campaign, **fields):
    job = JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL, **fields)
    CampaignPhase.objects.filter(campaign=campaign, phase=Phase.VERIFICATION).update(
        jobs_total=Job.objects.filter(campaign=campaign).count()
    )
    return job


def test_a_job_whose_worker_stopped_beating_is_taken_back_and_woken(running, settings, woken):
    job = verify_job(running, status=JobStatus.PROCESSING, attempts=1)
    age(job, seconds=settings.JOB_STUCK_AFTER_SECONDS + 5)

    result = tasks.sweep()

    job.refresh_from_db()
    assert result["requeued"] == 1
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert "Stuck in processing" in job.last_error
    assert (str(running.pk), "pipeline", 1) in woken


def test_a_stuck_job_that_used_all_its_attempts_fails(running, settings, woken):
    job = verify_job(running, status=JobStatus.PROCESSING, attempts=settings.JOB_MAX_ATTEMPTS)
    age(job, seconds=settings.JOB_STUCK_AFTER_SECONDS + 5)
    assert tasks.sweep()["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Gave up after" in job.last_error


def test_live_and_other_jobs_are_left_alone(running, settings, woken):
    live = verify_job(running, status=JobStatus.PROCESSING, attempts=1)
    age(live, seconds=settings.JOB_STUCK_AFTER_SECONDS - 20)
    others = [verify_job(running, status=status) for status in ("paused", "completed")]

    result = tasks.sweep()

    assert (result["requeued"], result["failed"]) == (0, 0)
    assert Job.objects.get(pk=live.pk).status == JobStatus.PROCESSING
    assert [Job.objects.get(pk=j.pk).status for j in others] == ["pending", "completed"]  # the paused orphan wakes


def test_a_long_provider_call_keeps_its_job_alive(running, settings):
    settings.ENGINE_HEARTBEAT_SECONDS = 0.2
    verify_job(running)
    claimed = jobs.job_claim(campaign_id=running.pk, job_types=(JobType.VERIFY_EMAIL,))
    age(claimed, seconds=30)

    assert call_with_heartbeat(claimed, lambda: time.sleep(0.6) or "answer") == "answer"

    claimed.refresh_from_db()
    assert timezone.now() - claimed.updated_at < timedelta(seconds=1)


def test_a_campaign_whose_phase_ended_without_its_worker_moves_on(running, woken):
    LeadFactory(campaign=running, email_status="valid")
    verify_job(running, status=JobStatus.COMPLETED)
    CampaignPhase.objects.filter(campaign=running).update(jobs_finished=1)

    assert tasks.sweep()["advanced"] == 1
    running.refresh_from_db()
    assert running.phase == Phase.ENRICHMENT


def test_pending_work_that_lost_its_wake_ups_is_woken_once_in_a_while(running, settings, woken):
    job = verify_job(running)
    age(job, seconds=settings.ENGINE_STRANDED_AFTER_SECONDS + 5)

    assert tasks.sweep()["woken"] == 1
    assert woken == [(str(running.pk), "pipeline", settings.ENGINE_CAMPAIGN_PARALLELISM)]
    assert tasks.sweep()["woken"] == 0  # not again right away: the wake-ups may be in a backlog


def test_fresh_work_and_work_with_a_running_job_are_not_stranded(running, settings, woken):
    verify_job(running)  # just created
    busy = verify_job(running, status=JobStatus.PROCESSING)
    waiting = verify_job(running)
    age(waiting, seconds=settings.ENGINE_STRANDED_AFTER_SECONDS + 5)
    age(busy, seconds=5)
    assert tasks.sweep()["woken"] == 0


def test_a_retry_waiting_for_its_time_is_not_stranded(running, settings, woken):
    job = verify_job(running, run_after=timezone.now() + timedelta(minutes=1))
    age(job, seconds=settings.ENGINE_STRANDED_AFTER_SECONDS + 5)
    assert tasks.sweep()["woken"] == 0


def test_nothing_is_woken_while_the_queue_is_paused(running, settings, woken):
    job = verify_job(running)
    age(job, seconds=settings.ENGINE_STRANDED_AFTER_SECONDS + 5)
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert tasks.sweep()["woken"] == 0
    assert woken == []


def test_a_paused_job_of_a_running_campaign_goes_back_to_pending(running, woken, kicked):
    """A worker paused it for a queue pause that an operator resumed in between."""
    job = verify_job(running, status=JobStatus.PAUSED)
    paused_campaign = CampaignFactory(organization=running.organization, status="paused", pause_kind="queue")
    kept = JobFactory(campaign=paused_campaign, status=JobStatus.PAUSED)

    assert tasks.sweep()["unpaused"] == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.PENDING
    assert Job.objects.get(pk=kept.pk).status == JobStatus.PAUSED  # its campaign waits for the resume
    assert kicked == [str(running.pk)]
