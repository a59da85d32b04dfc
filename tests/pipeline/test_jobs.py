"""The job runner: the claim, outcomes, retries, the reaper and cleanup."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import jobs, tasks
from campaigns.models import Campaign, Job
from campaigns.registry import JOB_HANDLERS, PermanentJobError, RetryableJobError
from campaigns.states import JOB_ACTIVE_STATUSES, JOB_FINAL_STATUSES, JobStatus, JobType, Phase
from integrations.errors import RateLimitedError
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory, LeadFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(org):
    return CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)


@pytest.fixture
def job(running):
    return JobFactory(campaign=running, lead=LeadFactory(campaign=running), job_type=JobType.VERIFY_EMAIL)


@pytest.fixture
def handler(monkeypatch):
    """Replace the verify_email handler; `handler.calls` counts its runs, `handler.effect` decides."""

    class Handler:
        calls = 0
        effect = None

        def __call__(self, *, job):
            self.calls += 1
            if self.effect is not None:
                raise self.effect
            return {"ok": True}

    fake = Handler()
    monkeypatch.setitem(JOB_HANDLERS, JobType.VERIFY_EMAIL, fake)
    return fake


def age(job_or_qs, **delta):
    qs = job_or_qs if hasattr(job_or_qs, "update") else Job.objects.filter(pk=job_or_qs.pk)
    qs.update(updated_at=timezone.now() - timedelta(**delta))


# --- claim -------------------------------------------------------------------------------------


def test_the_claim_is_one_conditional_update(job):
    with CaptureQueriesContext(connection) as queries:
        claimed = jobs.job_claim(job.pk, task_id="task-1")
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert "EXISTS" in updates[0]
    assert (claimed.status, claimed.attempts, claimed.celery_task_id) == (JobStatus.PROCESSING, 1, "task-1")
    assert claimed.started_at is not None


def test_a_job_is_claimed_only_once(job):
    assert jobs.job_claim(job.pk) is not None
    assert jobs.job_claim(job.pk) is None


@pytest.mark.parametrize("status", ["paused", "cancelled", "completed", "failed", "draft"])
def test_the_claim_refuses_a_job_whose_campaign_is_not_running(job, status):
    Campaign.objects.filter(pk=job.campaign_id).update(status=status)
    assert jobs.job_claim(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)


def test_the_claim_refuses_while_the_queue_is_paused(job):
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert jobs.job_claim(job.pk) is None
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_the_claim_refuses_when_the_latch_row_is_missing(job):
    QueueState.objects.all().delete()
    assert jobs.job_claim(job.pk) is None


def test_a_task_whose_claim_fails_does_nothing(job, handler):
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert tasks.run_job(job.pk) == "not claimed"
    assert handler.calls == 0


def test_a_duplicated_delivery_runs_the_job_once(job, handler):
    assert tasks.run_job(job.pk) == "completed"
    assert tasks.run_job(job.pk) == "not claimed"
    job.refresh_from_db()
    assert (handler.calls, job.status, job.attempts, job.result) == (1, JobStatus.COMPLETED, 1, {"ok": True})


@pytest.mark.django_db(transaction=True)
def test_two_workers_delivered_the_same_job_at_once_run_it_once(org, monkeypatch):
    campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
    job = JobFactory(campaign=campaign, lead=LeadFactory(campaign=campaign), job_type=JobType.VERIFY_EMAIL)
    calls = []
    monkeypatch.setitem(JOB_HANDLERS, JobType.VERIFY_EMAIL, lambda *, job: calls.append(job.pk) or {})
    monkeypatch.setattr("campaigns.pipeline.campaigns_kick", lambda ids: None)
    barrier = threading.Barrier(2)
    outcomes = []

    def deliver():
        try:
            barrier.wait()
            outcomes.append(tasks.run_job(job.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["completed", "not claimed"]
    assert calls == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)


# --- outcomes and retries ----------------------------------------------------------------------


def test_a_transient_error_puts_the_job_back_to_pending_with_a_short_countdown(
    job, handler, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.JOB_RETRY_BACKOFF_SECONDS = 2
    sent = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, countdown: sent.append((args, countdown)))
    handler.effect = RetryableJobError("timeout talking to the verifier")

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.run_job(job.pk) == "retry"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert job.last_error == "RetryableJobError: timeout talking to the verifier"
    assert sent == [((job.pk,), 4)]  # 2 s * 2**attempts


def test_retry_countdowns_stay_short(job, handler, monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.JOB_RETRY_BACKOFF_SECONDS = 50
    settings.JOB_MAX_ATTEMPTS = 10
    sent = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, countdown: sent.append(countdown))
    handler.effect = RateLimitedError("apollo", "slow down", retry_after=3600)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.run_job(job.pk)
    assert sent == [jobs.RETRY_COUNTDOWN_MAX_SECONDS]


def test_a_job_fails_after_its_last_attempt_with_the_error(job, handler, settings):
    handler.effect = RetryableJobError("still down")
    for _ in range(settings.JOB_MAX_ATTEMPTS):
        tasks.run_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.FAILED, settings.JOB_MAX_ATTEMPTS)
    assert job.last_error == f"RetryableJobError: still down (gave up after {settings.JOB_MAX_ATTEMPTS} attempts)"
    assert job.finished_at is not None


def test_a_permanent_error_fails_that_job_only(job, handler):
    sibling = JobFactory(campaign=job.campaign, lead=LeadFactory(campaign=job.campaign), job_type=JobType.VERIFY_EMAIL)
    handler.effect = PermanentJobError("no such person")
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error) == (JobStatus.FAILED, 1, "PermanentJobError: no such person")
    assert Job.objects.get(pk=sibling.pk).status == JobStatus.PENDING
    job.campaign.refresh_from_db()
    assert (job.campaign.status, job.campaign.phase) == ("running", Phase.VERIFICATION)


def test_a_paused_job_whose_call_had_finished_records_its_outcome(job):
    claimed = jobs.job_claim(job.pk)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PAUSED)  # the cascade, mid-call
    assert jobs.job_finish(job=claimed, status=JobStatus.COMPLETED, result={"result": "ok"})
    job.refresh_from_db()
    assert (job.status, job.result) == (JobStatus.COMPLETED, {"result": "ok"})


def test_a_job_without_a_handler_fails_saying_so(running):
    job = JobFactory(campaign=running, job_type=JobType.CLEANUP)
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.last_error == "PermanentJobError: No handler is registered for cleanup jobs."


@pytest.mark.django_db(transaction=True)
def test_two_workers_finishing_the_last_two_jobs_of_a_phase_advance_it_once(org, monkeypatch):
    kicks = []
    monkeypatch.setattr("campaigns.pipeline.campaigns_kick", lambda ids: kicks.append(list(ids)))
    for _ in range(3):
        campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
        leads = LeadFactory.create_batch(2, campaign=campaign, email_status="valid")
        pair = [
            JobFactory(campaign=campaign, lead=lead, job_type=JobType.VERIFY_EMAIL, status=JobStatus.PROCESSING)
            for lead in leads
        ]
        barrier = threading.Barrier(2)

        def finish(job, barrier=barrier):
            try:
                barrier.wait()
                jobs.job_finish(job=job, status=JobStatus.COMPLETED, result={})
            finally:
                connection.close()

        threads = [threading.Thread(target=finish, args=(job,)) for job in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        campaign.refresh_from_db()
        assert campaign.phase == Phase.ENRICHMENT
        assert Job.objects.filter(campaign=campaign, job_type=JobType.ENRICH_LEAD).count() == 2
    assert len(kicks) == 3  # one fan-out per campaign


# --- reaper ------------------------------------------------------------------------------------


def test_the_reaper_requeues_jobs_stuck_in_processing(job, settings, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.run_job, "delay", sent.append)
    jobs.job_claim(job.pk)
    age(job, seconds=settings.JOB_STUCK_AFTER_SECONDS + 5)

    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.reap_stuck_jobs()
    job.refresh_from_db()
    assert result["requeued"] == 1
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert "Stuck in processing" in job.last_error
    assert sent == [job.pk]


def test_the_reaper_fails_a_stuck_job_that_used_all_its_attempts(job, settings):
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PROCESSING, attempts=settings.JOB_MAX_ATTEMPTS)
    age(job, seconds=settings.JOB_STUCK_AFTER_SECONDS + 5)
    assert tasks.reap_stuck_jobs()["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "Gave up after" in job.last_error


def test_the_reaper_leaves_live_and_other_jobs_alone(running, settings):
    live = JobFactory(campaign=running, status=JobStatus.PROCESSING)
    age(live, seconds=settings.JOB_STUCK_AFTER_SECONDS - 60)
    others = [JobFactory(campaign=running, status=status) for status in ("pending", "paused", "completed")]
    age(Job.objects.filter(pk__in=[j.pk for j in others]), days=3)

    assert tasks.reap_stuck_jobs() == {"requeued": 0, "failed": 0, "campaigns_advanced": 0}
    assert Job.objects.get(pk=live.pk).status == JobStatus.PROCESSING
    assert [Job.objects.get(pk=j.pk).status for j in others] == ["pending", "paused", "completed"]


def test_the_reaper_moves_on_a_campaign_whose_phase_ended_without_it(running, monkeypatch):
    monkeypatch.setattr("campaigns.pipeline.campaigns_kick", lambda ids: None)
    lead = LeadFactory(campaign=running, email_status="valid")
    JobFactory(campaign=running, lead=lead, job_type=JobType.VERIFY_EMAIL, status=JobStatus.COMPLETED)

    assert tasks.reap_stuck_jobs()["campaigns_advanced"] == 1
    running.refresh_from_db()
    assert running.phase == Phase.ENRICHMENT


# --- cleanup -----------------------------------------------------------------------------------


@pytest.fixture
def aged_jobs(running):
    """One old and one recent job of every status."""
    made = {}
    for status in JobStatus.values:
        old, recent = JobFactory(campaign=running, status=status), JobFactory(campaign=running, status=status)
        age(old, days=40)
        age(recent, days=2)
        made[status] = (old, recent)
    return made


def test_cleanup_removes_final_jobs_older_than_the_cutoff(aged_jobs):
    result = jobs.jobs_cleanup(older_than_days=30)
    assert result["deleted"] == result["matched"] == 3
    assert result["by_status"] == {"completed": 1, "failed": 1, "cancelled": 1}
    for status, (old, recent) in aged_jobs.items():
        assert Job.objects.filter(pk=recent.pk).exists()
        assert Job.objects.filter(pk=old.pk).exists() == (status in JOB_ACTIVE_STATUSES)


def test_cleanup_never_removes_an_active_job_however_old(aged_jobs):
    jobs.jobs_cleanup(older_than_days=0)
    assert set(Job.objects.values_list("status", flat=True)) == set(JOB_ACTIVE_STATUSES)
    assert Job.objects.count() == 2 * len(JOB_ACTIVE_STATUSES)


def test_a_dry_run_counts_and_deletes_nothing(aged_jobs):
    result = jobs.jobs_cleanup(older_than_days=30, dry_run=True)
    assert (result["matched"], result["deleted"], result["dry_run"]) == (3, 0, True)
    assert Job.objects.count() == 2 * len(JobStatus.values)


def test_cleanup_can_be_limited_to_one_campaign(aged_jobs, org):
    other = JobFactory(campaign=CampaignFactory(organization=org), status=JobStatus.COMPLETED)
    age(other, days=40)
    campaign_id = aged_jobs["completed"][0].campaign_id
    assert jobs.jobs_cleanup(older_than_days=30, campaign_id=campaign_id)["deleted"] == 3
    assert Job.objects.filter(pk=other.pk).exists()


def test_the_daily_task_uses_the_retention_setting(aged_jobs, settings):
    settings.JOB_RETENTION_DAYS = 1
    assert tasks.cleanup_old_jobs()["deleted"] == 2 * len(JOB_FINAL_STATUSES)


def test_job_counts_cover_every_status_in_one_query(running, django_assert_num_queries):
    JobFactory.create_batch(2, campaign=running, status=JobStatus.FAILED)
    with django_assert_num_queries(1):
        counts = jobs.job_counts(campaign_id=running.pk)
    assert counts == {"pending": 0, "processing": 0, "paused": 0, "completed": 0, "failed": 2, "cancelled": 0}
