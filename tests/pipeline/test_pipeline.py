"""The pipeline, phase by phase, on the sandbox providers, with jobs run in-process (drain)."""

import io
import threading
from collections import Counter

import pytest
from django.utils import timezone

from campaigns import handlers, pipeline, runner, services
from campaigns.csv_import import leads_import_csv
from campaigns.jobs import job_claim, job_finish
from campaigns.models import Campaign, CampaignEvent, CampaignPhase, Job, Lead
from campaigns.registry import OUTREACH_LAUNCHERS
from campaigns.selectors import campaign_progress
from campaigns.states import JobStatus, JobType, Phase
from campaigns_project.errors import ApplicationError
from integrations.errors import BadRequestError, QuotaExhaustedError, ServerError
from integrations.sandbox import MillionVerifierSandbox, OpenAISandbox
from queue_control.gate import mirror_set
from queue_control.models import QueueState
from queue_control.services import breaker_reset, queue_pause, queue_resume
from tests.breakers import cascade_fails
from tests.factories import CampaignFactory, JobFactory, LeadFactory

from .conftest import NOBODY_URL, drain

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_batches(settings):
    settings.ENGINE_BATCH_SIZE = 7  # 20 leads make three verification batches


def start(campaign, actor=None) -> Campaign:
    services.campaign_start(campaign_id=campaign.pk, actor=actor)
    drain(campaign)
    campaign.refresh_from_db()
    return campaign


def jobs_of(campaign, job_type):
    return Job.objects.filter(campaign=campaign, job_type=job_type)


def phase(campaign, name) -> CampaignPhase:
    return CampaignPhase.objects.get(campaign=campaign, phase=name)


@pytest.fixture
def verify_calls(monkeypatch):
    """Every address the verifier sandbox was asked about (threads share the list)."""
    calls: list[str] = []
    lock = threading.Lock()
    real = MillionVerifierSandbox.verify

    def verify(self, email):
        with lock:
            calls.append(email)
        return real(self, email)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", verify)
    return calls


def test_starting_a_campaign_enters_lead_sourcing_with_one_fetch_job(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("running", Phase.LEAD_SOURCING)
    assert campaign_progress(campaign=campaign) == {"overall": 0, "phase": 0}
    assert list(Job.objects.filter(campaign=campaign).values_list("job_type", "status")) == [
        (JobType.FETCH_LEADS, JobStatus.PENDING)
    ]
    sourcing = phase(campaign, Phase.LEAD_SOURCING)
    assert (sourcing.jobs_total, sourcing.items_total) == (1, 20)


def test_a_campaign_runs_through_every_phase_to_completed(campaign, alice, verify_calls):
    campaign = start(campaign, alice)

    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE)
    assert campaign_progress(campaign=campaign) == {"overall": 100, "phase": 100}
    leads = Lead.objects.filter(campaign=campaign)
    assert leads.count() == 20
    assert leads.values("email").distinct().count() == 20
    assert not leads.filter(email_status="unverified").exists()
    assert sorted(verify_calls) == sorted(leads.values_list("email", flat=True))  # each address once
    verify = jobs_of(campaign, JobType.VERIFY_EMAIL)
    assert set(verify.values_list("status", flat=True)) == {JobStatus.COMPLETED}
    assert sorted(verify.values_list("size", flat=True)) == [6, 7, 7]  # batches, not one job per lead
    sendable = leads.filter(email_status__in=pipeline.SENDABLE_EMAIL_STATUSES)
    assert sendable.exists()
    enrich = jobs_of(campaign, JobType.ENRICH_LEAD)
    assert sum(enrich.values_list("size", flat=True)) == sendable.count()
    assert set(enrich.values_list("status", flat=True)) == {JobStatus.COMPLETED}
    for lead in sendable:
        assert lead.enrichment["line"] and lead.enrichment["provider"] == "openai"
        assert lead.enriched_at is not None
    assert not leads.exclude(email_status__in=pipeline.SENDABLE_EMAIL_STATUSES).filter(enriched_at__isnull=False)
    counted = {row.phase: row for row in CampaignPhase.objects.filter(campaign=campaign)}
    assert (counted[Phase.VERIFICATION].items_done, counted[Phase.VERIFICATION].items_passed) == (20, sendable.count())
    assert counted[Phase.ENRICHMENT].items_passed == sendable.count()
    assert counted[Phase.OUTREACH].items_passed == sendable.count()  # mails sent
    assert all(row.finished_at for row in counted.values())
    assert campaign.status_message == (
        f"Completed: 20 leads, {sendable.count()} verified, {sendable.count()} enriched; {sendable.count()} sent."
    )
    assert CampaignEvent.objects.filter(campaign=campaign, action="campaign.completed", actor_label="pipeline").exists()
    changes = campaign.events.filter(action="campaign.phase_changed").order_by("id").values_list("reason", flat=True)
    assert list(changes) == [
        "lead_sourcing → verification",
        "verification → enrichment",
        "enrichment → outreach",
        "outreach → done",
    ]


def test_invalid_addresses_are_neither_enriched_nor_mailed(campaign, alice):
    campaign = start(campaign, alice)
    invalid = Lead.objects.filter(campaign=campaign, email_status="invalid")
    assert invalid.exists(), "the sandbox marks about one address in ten invalid"
    assert all(lead.email.startswith("bad.") for lead in invalid)
    assert not invalid.filter(enriched_at__isnull=False).exists()
    assert not campaign.recipients.filter(email__in=invalid.values("email")).exists()


def test_a_search_that_finds_nobody_fails_the_campaign_with_a_clear_message(org, alice):
    campaign = start(CampaignFactory(organization=org, search_url=NOBODY_URL), alice)

    assert campaign.status == "failed"
    assert campaign.status_error == "The lead source returned no leads for this search."
    assert campaign.phase == Phase.LEAD_SOURCING
    assert not Job.objects.filter(campaign=campaign, job_type=JobType.VERIFY_EMAIL).exists()


def test_a_failing_lead_source_fails_the_campaign_after_its_retries(campaign, alice, settings):
    settings.SANDBOX_FAIL = ["apollo"]
    settings.BREAKERS = {**settings.BREAKERS, "apollo": {"threshold": 100, "window": 60}}
    campaign = start(campaign, alice)

    fetch = jobs_of(campaign, JobType.FETCH_LEADS).get()
    assert fetch.status == JobStatus.FAILED
    assert fetch.attempts == settings.JOB_MAX_ATTEMPTS
    assert "failure injected" in fetch.last_error
    assert campaign.status == "failed"
    assert campaign.status_error.startswith("Lead sourcing failed: SandboxInjectedFailure: apollo:")


def test_an_address_the_verifier_refuses_is_marked_invalid_and_the_campaign_goes_on(campaign, alice, monkeypatch):
    real_verify = MillionVerifierSandbox.verify
    refused = []

    def verify(self, email):
        if not refused:
            refused.append(email)
            raise BadRequestError("millionverifier", "invalid email syntax", 200)
        return real_verify(self, email)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", verify)
    campaign = start(campaign, alice)

    assert campaign.status == "completed"
    lead = Lead.objects.get(campaign=campaign, email=refused[0])
    assert (lead.email_status, lead.enriched_at) == ("invalid", None)
    job = jobs_of(campaign, JobType.VERIFY_EMAIL).get(range_start__lte=lead.pk, range_end__gte=lead.pk)
    assert job.status == JobStatus.COMPLETED
    assert job.result["last_refusal"] == "invalid email syntax"


def test_a_transient_error_is_retried_for_that_lead_only(campaign, alice, monkeypatch):
    real = OpenAISandbox.personalize
    calls = Counter()
    failed = []

    def personalize(self, lead):
        calls[lead["email"]] += 1
        if not failed:
            failed.append(lead["email"])
            raise ServerError("openai", "server_is_overloaded", 503)
        return real(self, lead)

    monkeypatch.setattr(OpenAISandbox, "personalize", personalize)
    campaign = start(campaign, alice)

    assert campaign.status == "completed"
    assert calls[failed[0]] == 2  # the failed call, then its retry
    assert set(calls.values()) == {1, 2} and list(calls.values()).count(2) == 1  # nobody else paid twice
    lead = Lead.objects.get(campaign=campaign, email=failed[0])
    job = jobs_of(campaign, JobType.ENRICH_LEAD).get(range_start__lte=lead.pk, range_end__gte=lead.pk)
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert "server_is_overloaded" in job.last_error  # the earlier attempt's error stays visible


def test_leads_that_keep_failing_are_counted_as_given_up(campaign, alice, monkeypatch, settings):
    settings.BREAKERS = {**settings.BREAKERS, "openai": {"threshold": 1000, "window": 60}}
    real = OpenAISandbox.personalize
    doomed: set[str] = set()

    def personalize(self, lead):
        if not doomed:
            doomed.add(lead["email"])
        if lead["email"] in doomed:
            raise ServerError("openai", "server_is_overloaded", 503)
        return real(self, lead)

    monkeypatch.setattr(OpenAISandbox, "personalize", personalize)
    campaign = start(campaign, alice)

    assert campaign.status == "completed"
    assert phase(campaign, Phase.ENRICHMENT).items_failed == 1
    assert "(1 could not be enriched)" in campaign.status_message
    failed_job = jobs_of(campaign, JobType.ENRICH_LEAD).get(status=JobStatus.FAILED)
    assert failed_job.last_error.startswith("PermanentJobError: 1 of ")


def test_a_campaign_from_a_csv_upload_uses_the_uploaded_leads(org, alice):
    campaign = CampaignFactory(organization=org, search_url="", send_rate_per_minute=60_000)
    rows = "email,first_name,company\n" + "".join(f"person{i}@example.org,P{i},Acme\n" for i in range(7))
    leads_import_csv(campaign_id=campaign.pk, file=io.BytesIO(rows.encode()), file_name="people.csv")
    campaign = start(campaign, alice)

    assert campaign.status == "completed"
    assert Lead.objects.filter(campaign=campaign, source="csv").count() == 7
    assert jobs_of(campaign, JobType.FETCH_LEADS).get().result == {
        "source": "csv",
        "file_name": "people.csv",
        "leads": 7,
        "counted": True,
    }
    assert (phase(campaign, Phase.LEAD_SOURCING).items_total, phase(campaign, Phase.LEAD_SOURCING).items_done) == (7, 7)


def test_a_campaign_without_a_lead_source_is_refused_at_start_instead_of_failing_later(org, alice):
    campaign = CampaignFactory(organization=org, search_url="")
    with pytest.raises(ApplicationError, match="missing a lead source"):
        services.campaign_start(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("draft", "")
    assert not campaign.jobs.exists()


def test_the_instantly_channel_pushes_the_sendable_leads(org, alice, monkeypatch):
    monkeypatch.setattr(handlers, "INSTANTLY_JOB_LEADS", 5)
    campaign = start(CampaignFactory(organization=org, channel="instantly", lead_count=12), alice)

    assert campaign.status == "completed", campaign.status_error
    assert campaign.instantly_campaign_id
    pushes = jobs_of(campaign, JobType.PUSH_INSTANTLY)
    assert set(pushes.values_list("status", flat=True)) == {JobStatus.COMPLETED}
    create = pushes.get(range_start__isnull=True)
    assert create.result == {"instantly_campaign_id": campaign.instantly_campaign_id}
    sendable = Lead.objects.filter(campaign=campaign, email_status__in=pipeline.SENDABLE_EMAIL_STATUSES).count()
    assert pushes.filter(range_start__isnull=False).count() == -(-sendable // 5)
    uploaded = sum(job.result["counts"]["leads_uploaded"] for job in pushes.filter(range_start__isnull=False))
    assert uploaded == sendable
    assert f"{sendable} of {sendable} leads pushed to Instantly" in campaign.status_message


def test_a_campaign_whose_channel_has_no_launcher_fails_instead_of_claiming_success(campaign, alice, monkeypatch):
    monkeypatch.delitem(OUTREACH_LAUNCHERS, "smtp", raising=False)
    campaign = start(campaign, alice)
    assert (campaign.status, campaign.phase) == ("failed", Phase.OUTREACH)
    assert campaign.status_error == "No outreach launcher is registered for the smtp channel."
    assert not jobs_of(campaign, JobType.SEND_EMAIL).exists()


def test_outreach_is_done_at_once_when_no_lead_is_sendable(campaign, alice, monkeypatch):
    monkeypatch.setattr(MillionVerifierSandbox, "verify", lambda self, email: _verdict("invalid"))
    campaign = start(campaign, alice)
    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE)
    assert not jobs_of(campaign, JobType.ENRICH_LEAD).exists()
    assert not jobs_of(campaign, JobType.SEND_EMAIL).exists()
    assert campaign.status_message == "Completed: 20 leads, 0 verified, 0 enriched; nothing to send."


def _verdict(result):
    from integrations.millionverifier import VerificationResult

    return VerificationResult(result=result, quality="", subresult="", credits=None, raw={})


def test_a_long_search_is_fetched_over_several_runs_without_losing_pages(org, alice, settings):
    settings.ENGINE_TASK_BUDGET_SECONDS = 0  # every run does one page and yields
    campaign = CampaignFactory(organization=org, lead_count=250, channel="instantly")
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    fetch = jobs_of(campaign, JobType.FETCH_LEADS).get()

    assert runner.job_work(campaign_id=campaign.pk, kind="pipeline") == "continued"
    fetch.refresh_from_db()
    assert (fetch.status, fetch.attempts, fetch.result["next_page"]) == (JobStatus.PENDING, 0, 2)
    assert Lead.objects.filter(campaign=campaign).count() == 100
    assert phase(campaign, Phase.LEAD_SOURCING).items_done == 100

    while jobs_of(campaign, JobType.FETCH_LEADS).filter(status=JobStatus.PENDING).exists():
        runner.job_work(campaign_id=campaign.pk, kind="pipeline")
    fetch.refresh_from_db()
    assert (fetch.status, fetch.result["leads"], fetch.result["pages"]) == (JobStatus.COMPLETED, 250, 3)
    assert Lead.objects.filter(campaign=campaign).count() == 250


def test_a_queue_pause_mid_batch_stops_its_calls_and_the_resume_pays_for_none_twice(
    campaign, alice, admin_user, monkeypatch, settings, committed, sent_messages
):
    settings.PROVIDER_CONCURRENCY = {**settings.PROVIDER_CONCURRENCY, "millionverifier": 1}  # one call at a time
    real = MillionVerifierSandbox.verify
    calls = Counter()

    def verify(self, email):
        calls[email] += 1
        if sum(calls.values()) == 3:
            # An operator pauses mid-batch: the first thing queue_pause does is this (its
            # transaction, here, would wait for the test's own).
            mirror_set(QueueState.State.PAUSED)
        return real(self, email)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", verify)
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    runner.job_work(campaign_id=campaign.pk, kind="pipeline")  # lead sourcing
    assert runner.job_work(campaign_id=campaign.pk, kind="pipeline") == "paused"
    queue_pause(reason="maintenance", actor_label="test")

    job = jobs_of(campaign, JobType.VERIFY_EMAIL).order_by("pk").first()  # the one that ran
    assert (job.status, job.attempts) == (JobStatus.PAUSED, 0)  # a pause is no failed attempt
    assert sum(job.result["by_status"].values()) == 3
    stored = Lead.objects.filter(campaign=campaign).exclude(email_status="unverified").count()
    assert sum(calls.values()) == stored == 3  # no call started after the pause; the one in flight is stored

    with committed():
        queue_resume(actor=admin_user)
    assert ("campaigns.tasks.kick_campaign", (str(campaign.pk),), "pipeline") in sent_messages
    drain(campaign)
    campaign.refresh_from_db()
    assert campaign.status == "completed"
    assert set(calls.values()) == {1}  # nobody verified twice


def test_running_out_of_credit_trips_the_breaker_and_leaves_the_job_paused(campaign, alice, monkeypatch):
    def no_credit(self, email):
        raise QuotaExhaustedError("millionverifier", "insufficient credits", 402)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", no_credit)
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    runner.job_work(campaign_id=campaign.pk, kind="pipeline")

    assert runner.job_work(campaign_id=campaign.pk, kind="pipeline") == "paused"
    job = jobs_of(campaign, JobType.VERIFY_EMAIL).order_by("pk").first()
    assert (job.status, job.attempts) == (JobStatus.PAUSED, 0)
    assert QueueState.objects.get(pk=1).state == "paused"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "breaker:millionverifier")


def test_a_breaker_opening_mid_run_pauses_and_the_run_finishes_after_reset_and_resume(
    campaign, alice, admin_user, settings, committed, sent_messages
):
    settings.BREAKERS = {**settings.BREAKERS, "openai": {"threshold": 1, "window": 60}}
    settings.SANDBOX_FAIL = ["openai"]
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    drain(campaign)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause, campaign.phase) == ("paused", "breaker:openai", Phase.ENRICHMENT)

    settings.SANDBOX_FAIL = []
    breaker_reset(service="openai", actor=admin_user)
    with committed():
        queue_resume(actor=admin_user)
    runner.campaign_kick(campaign_id=campaign.pk)  # what the resume's kick runs on a worker
    drain(campaign)
    campaign.refresh_from_db()
    assert campaign.status == "completed", campaign.status_error


def test_a_phase_ending_while_paused_moves_on_when_the_campaign_resumes(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    fetch = job_claim(campaign_id=campaign.pk, job_types=(JobType.FETCH_LEADS,))
    services.campaign_pause(campaign_id=campaign.pk, actor=alice)
    LeadFactory(campaign=campaign)

    assert job_finish(job=fetch, status=JobStatus.COMPLETED, result={})  # the in-flight call's outcome
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("paused", Phase.LEAD_SOURCING)

    services.campaign_resume(campaign_id=campaign.pk, actor=alice)
    runner.campaign_kick(campaign_id=campaign.pk)  # what the resume's kick runs on a worker
    campaign.refresh_from_db()
    assert campaign.phase == Phase.VERIFICATION
    assert jobs_of(campaign, JobType.VERIFY_EMAIL).count() == 1


def test_progress_is_read_from_the_phase_counters(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status="running", phase=Phase.VERIFICATION)
    now = timezone.now()
    CampaignPhase.objects.create(
        campaign=campaign, phase=Phase.LEAD_SOURCING, items_total=20, items_done=20, started_at=now, updated_at=now
    )
    CampaignPhase.objects.filter(phase=Phase.LEAD_SOURCING).update(finished_at=now)
    CampaignPhase.objects.create(
        campaign=campaign,
        phase=Phase.VERIFICATION,
        items_total=20,
        items_done=8,
        items_failed=2,
        started_at=now,
        updated_at=now,
    )
    campaign.refresh_from_db()
    assert campaign_progress(campaign=campaign) == {"overall": 37, "phase": 50}  # (100 + 50) / 4


def test_cancelling_a_campaign_cancels_its_active_jobs_and_drops_late_outcomes(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    runner.job_work(campaign_id=campaign.pk, kind="pipeline")
    in_flight = job_claim(campaign_id=campaign.pk, job_types=(JobType.VERIFY_EMAIL,))

    services.campaign_cancel(campaign_id=campaign.pk, actor=alice)
    assert set(jobs_of(campaign, JobType.VERIFY_EMAIL).values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert jobs_of(campaign, JobType.FETCH_LEADS).get().status == JobStatus.COMPLETED

    assert not job_finish(job=in_flight, status=JobStatus.COMPLETED, result={"late": True})
    in_flight.refresh_from_db()
    assert in_flight.status == JobStatus.CANCELLED


def test_the_fan_out_of_a_phase_is_harmless_when_repeated(campaign):
    LeadFactory.create_batch(9, campaign=campaign)
    campaign.phase = Phase.VERIFICATION
    assert pipeline.fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None) == 2
    assert pipeline.fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None) == 0
    assert sorted(jobs_of(campaign, JobType.VERIFY_EMAIL).values_list("size", flat=True)) == [2, 7]


def test_a_verified_lead_is_not_verified_twice(campaign, monkeypatch):
    lead = LeadFactory(campaign=campaign, email_status="valid")
    job = JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL, range_start=lead.pk, range_end=lead.pk, size=1)
    monkeypatch.setattr(MillionVerifierSandbox, "verify", lambda *a: pytest.fail("paid twice"))
    assert handlers.verify_emails(job=job) == {"by_status": {}}


def test_a_job_the_gate_refuses_finishes_a_pause_the_trip_lost(campaign, alice, settings):
    """The breaker opened, the queue pause after it failed on the database, and the gate (paused
    from the start of that pause) refuses every call: the job that meets the refusal pauses the
    queue, instead of leaving the campaign running with its jobs parked."""
    settings.BREAKERS = {**settings.BREAKERS, "millionverifier": {"threshold": 1, "window": 60}}
    settings.SANDBOX_FAIL = ["millionverifier"]
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    with cascade_fails(1) as left:
        drain(campaign)
    assert left == [0]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "breaker:millionverifier")
    assert QueueState.objects.get(pk=1).state == "paused"
