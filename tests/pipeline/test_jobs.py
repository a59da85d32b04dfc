"""The job runner: the claim, outcomes, retries, the fencing of a run, and cleanup."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import jobs, runner
from campaigns.models import Campaign, CampaignPhase, Job
from campaigns.registry import JOB_HANDLERS, PermanentJobError, RetryableJobError
from campaigns.states import JOB_ACTIVE_STATUSES, JOB_FINAL_STATUSES, JobStatus, JobType, Phase
from integrations.errors import RateLimitedError
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory

pytestmark = pytest.mark.django_db

VERIFY = (JobType.VERIFY_EMAIL,)


@pytest.fixture
def running(org):
    campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
    now = timezone.now()
    CampaignPhase.objects.create(campaign=campaign, phase=Phase.VERIFICATION, started_at=now, updated_at=now)
    return campaign


def add_job(campaign, **fields) -> Job:
    job = JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL, **fields)
    CampaignPhase.objects.filter(campaign=campaign, phase=Phase.VERIFICATION).update(
        jobs_total=Job.objects.filter(campaign=campaign).count()
    )
    return job


@pytest.fixture
def job(running):
    return add_job(running)


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


@pytest.fixture
def woken(monkeypatch):
    """The wake-ups the runner sends: (campaign id, queue, countdown)."""
    sent = []

    def wake(campaign_id, kind, *, count=1, countdown=None):
        sent.append((str(campaign_id), kind, countdown))

    monkeypatch.setattr(runner, "wake", wake)
    monkeypatch.setattr(jobs, "wake", wake)
    return sent


def claim(campaign, **kwargs):
    return jobs.job_claim(campaign_id=campaign.pk, job_types=VERIFY, **kwargs)


def age(job_or_qs, **delta):
    qs = job_or_qs if hasattr(job_or_qs, "update") else Job.objects.filter(pk=job_or_qs.pk)
    qs.update(updated_at=timezone.now() - timedelta(**delta))


# --- claim -------------------------------------------------------------------------------------


def test_the_claim_is_one_conditional_update(job):
    with CaptureQueriesContext(connection) as queries:
        claimed = claim(job.campaign, task_id="task-1")
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert "EXISTS" in updates[0] and "SKIP LOCKED" in updates[0]
    assert (claimed.pk, claimed.status, claimed.attempts, claimed.celery_task_id) == (
        job.pk,
        JobStatus.PROCESSING,
        1,
        "task-1",
    )
    assert claimed.started_at is not None


def test_a_job_is_claimed_only_once(job):
    assert claim(job.campaign) is not None
    assert claim(job.campaign) is None


def test_the_claim_takes_the_campaigns_jobs_in_order_and_only_its_own(running, org):
    first, second = add_job(running), add_job(running)
    other = CampaignFactory(organization=org, status="running")
    JobFactory(campaign=other, job_type=JobType.VERIFY_EMAIL)
    assert [claim(running).pk, claim(running).pk, claim(running)] == [first.pk, second.pk, None]


def test_the_claim_waits_for_a_retrys_time(running):
    later = add_job(running, run_after=timezone.now() + timedelta(minutes=1))
    assert claim(running) is None
    Job.objects.filter(pk=later.pk).update(run_after=timezone.now() - timedelta(seconds=1))
    assert claim(running).pk == later.pk


@pytest.mark.parametrize("status", ["paused", "cancelled", "completed", "failed", "draft"])
def test_the_claim_refuses_a_job_whose_campaign_is_not_running(job, status):
    Campaign.objects.filter(pk=job.campaign_id).update(status=status)
    assert claim(job.campaign) is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)


def test_the_claim_refuses_while_the_queue_is_paused(job):
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert claim(job.campaign) is None
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


def test_the_claim_refuses_when_the_latch_row_is_missing(job):
    QueueState.objects.all().delete()
    assert claim(job.campaign) is None


def test_a_wake_up_with_nothing_to_claim_does_nothing(job, handler):
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "nothing to claim"
    assert handler.calls == 0


def test_a_duplicated_wake_up_runs_the_job_once(job, handler, woken):
    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "completed"
    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "nothing to claim"
    job.refresh_from_db()
    assert (handler.calls, job.status, job.attempts, job.result) == (1, JobStatus.COMPLETED, 1, {"ok": True})


@pytest.mark.django_db(transaction=True)
def test_two_workers_woken_for_the_same_job_at_once_run_it_once(org, monkeypatch):
    campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
    job = JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL)
    calls = []
    monkeypatch.setitem(JOB_HANDLERS, JobType.VERIFY_EMAIL, lambda *, job: calls.append(job.pk) or {})
    monkeypatch.setattr(runner, "wake", lambda *args, **kwargs: None)
    barrier = threading.Barrier(2)
    outcomes = []

    def deliver():
        try:
            barrier.wait()
            outcomes.append(runner.job_work(campaign_id=campaign.pk, kind="pipeline"))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["completed", "nothing to claim"]
    assert calls == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 1)


def test_a_finished_job_passes_its_wake_up_on_while_work_is_left(running, handler, woken):
    add_job(running)
    add_job(running)
    runner.job_work(campaign_id=running.pk, kind="pipeline")
    assert woken == [(str(running.pk), "pipeline", None)]
    runner.job_work(campaign_id=running.pk, kind="pipeline")
    assert len(woken) == 1  # the last job: nothing left to pass on to


# --- outcomes and retries ----------------------------------------------------------------------


def test_a_transient_error_puts_the_job_back_to_pending_with_a_short_countdown(job, handler, woken, settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 2
    handler.effect = RetryableJobError("timeout talking to the verifier")

    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "retry"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 1)
    assert job.last_error == "RetryableJobError: timeout talking to the verifier"
    assert job.run_after > timezone.now() + timedelta(seconds=3)  # 2 s * 2**attempts
    assert woken == [(str(job.campaign_id), "pipeline", 4)]


def test_retry_countdowns_stay_short(job, handler, woken, settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 50
    settings.JOB_MAX_ATTEMPTS = 10
    handler.effect = RateLimitedError("apollo", "slow down", retry_after=3600)
    runner.job_work(campaign_id=job.campaign_id, kind="pipeline")
    assert [countdown for _, _, countdown in woken] == [jobs.RETRY_COUNTDOWN_MAX_SECONDS]


def test_a_job_fails_after_its_last_attempt_with_the_error(job, handler, woken, settings):
    handler.effect = RetryableJobError("still down")
    for _ in range(settings.JOB_MAX_ATTEMPTS):
        Job.objects.filter(pk=job.pk).update(run_after=None)
        runner.job_work(campaign_id=job.campaign_id, kind="pipeline")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.FAILED, settings.JOB_MAX_ATTEMPTS)
    assert job.last_error == f"RetryableJobError: still down (gave up after {settings.JOB_MAX_ATTEMPTS} attempts)"
    assert job.finished_at is not None


def test_a_permanent_error_fails_that_job_only(running, handler, woken):
    job, sibling = add_job(running), add_job(running)
    handler.effect = PermanentJobError("no such person")
    assert runner.job_work(campaign_id=running.pk, kind="pipeline") == "failed"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error) == (JobStatus.FAILED, 1, "PermanentJobError: no such person")
    assert Job.objects.get(pk=sibling.pk).status == JobStatus.PENDING
    running.refresh_from_db()
    assert (running.status, running.phase) == ("running", Phase.VERIFICATION)


def test_a_continuation_gives_its_attempt_back(job, handler, woken):
    handler.effect = jobs.JobIncomplete()
    for _ in range(5):
        assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "continued"
    job.refresh_from_db()
    assert (job.status, job.attempts, handler.calls) == (JobStatus.PENDING, 0, 5)


def test_a_job_stopped_by_its_campaigns_pause_waits_for_it(job, handler, woken):
    handler.effect = jobs.JobStopped("campaign paused")
    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "stopped"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert woken == []  # the resume wakes it


def test_a_paused_job_whose_call_had_finished_records_its_outcome(job):
    claimed = claim(job.campaign)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PAUSED)  # the cascade, mid-call
    assert jobs.job_finish(job=claimed, status=JobStatus.COMPLETED, result={"result": "ok"})
    job.refresh_from_db()
    assert (job.status, job.result) == (JobStatus.COMPLETED, {"result": "ok"})


def test_a_job_without_a_handler_fails_saying_so(job, monkeypatch, woken):
    monkeypatch.delitem(JOB_HANDLERS, JobType.VERIFY_EMAIL)
    assert runner.job_work(campaign_id=job.campaign_id, kind="pipeline") == "failed"
    job.refresh_from_db()
    assert job.last_error == "PermanentJobError: No handler is registered for verify_email jobs."


def test_a_run_that_lost_its_job_can_record_nothing(job):
    """A worker that stalled past its heartbeat, whose job was taken back and claimed again."""
    stale = claim(job.campaign)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.PENDING)  # taken back by the sweeper
    fresh = claim(job.campaign)
    assert fresh.attempts == stale.attempts + 1

    assert not jobs.job_checkpoint(stale, done=1)
    assert not jobs.job_heartbeat(stale)
    assert not jobs.job_finish(job=stale, status=JobStatus.COMPLETED, result={"stale": True})
    assert jobs.job_control(stale) == "job processing"
    assert jobs.job_finish(job=fresh, status=JobStatus.COMPLETED, result={"fresh": True})
    job.refresh_from_db()
    assert job.result == {"fresh": True}


@pytest.mark.django_db(transaction=True)
def test_two_workers_finishing_the_last_two_jobs_of_a_phase_advance_it_once(org, monkeypatch):
    from tests.factories import LeadFactory

    monkeypatch.setattr("campaigns.pipeline.wake", lambda *args, **kwargs: None)
    for _ in range(3):
        campaign = CampaignFactory(organization=org, status="running", phase=Phase.VERIFICATION)
        now = timezone.now()
        CampaignPhase.objects.create(
            campaign=campaign, phase=Phase.VERIFICATION, jobs_total=2, started_at=now, updated_at=now
        )
        LeadFactory.create_batch(2, campaign=campaign, email_status="valid")
        pair = [
            JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL, status=JobStatus.PROCESSING) for _ in range(2)
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
        assert Job.objects.filter(campaign=campaign, job_type=JobType.ENRICH_LEAD).count() == 1  # one batch
        phases = {p.phase: p for p in CampaignPhase.objects.filter(campaign=campaign)}
        assert phases[Phase.VERIFICATION].jobs_finished == 2 and phases[Phase.VERIFICATION].finished_at
        assert (phases[Phase.ENRICHMENT].jobs_total, phases[Phase.ENRICHMENT].items_total) == (1, 2)
        events = campaign.events.filter(action="campaign.phase_changed")
        assert list(events.values_list("reason", flat=True)) == ["verification → enrichment"]


def test_no_outcome_takes_the_campaign_row_lock_unless_it_ends_the_phase(running):
    first, last = add_job(running, status=JobStatus.PROCESSING), add_job(running, status=JobStatus.PROCESSING)
    with CaptureQueriesContext(connection) as queries:
        jobs.job_finish(job=first, status=JobStatus.COMPLETED, result={})
    assert not [q for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    with CaptureQueriesContext(connection) as queries:
        jobs.job_finish(job=last, status=JobStatus.COMPLETED, result={})
    assert [q for q in queries.captured_queries if "FOR UPDATE" in q["sql"] and "campaigns_campaign" in q["sql"]]


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
    from campaigns import tasks

    settings.JOB_RETENTION_DAYS = 1
    assert tasks.cleanup_old_jobs()["deleted"] == 2 * len(JOB_FINAL_STATUSES)


def test_job_counts_cover_every_status_in_one_query(running, django_assert_num_queries):
    JobFactory.create_batch(2, campaign=running, status=JobStatus.FAILED)
    with django_assert_num_queries(1):
        counts = jobs.job_counts(campaign_id=running.pk)
    assert counts == {"pending": 0, "processing": 0, "paused": 0, "completed": 0, "failed": 2, "cancelled": 0}
