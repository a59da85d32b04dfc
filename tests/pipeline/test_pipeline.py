"""The pipeline, phase by phase, on the sandbox providers, with jobs run in-process (drain)."""

import pytest
from django.utils import timezone

from campaigns import handlers, pipeline, services, tasks
from campaigns.csv_import import leads_import_csv
from campaigns.jobs import job_finish
from campaigns.models import Campaign, CampaignEvent, Job, Lead
from campaigns.registry import OUTREACH_LAUNCHERS
from campaigns.states import JobStatus, JobType, Phase
from campaigns_project.errors import ApplicationError
from integrations.errors import BadRequestError, QuotaExhaustedError, ServerError
from integrations.sandbox import MillionVerifierSandbox, OpenAISandbox
from queue_control.errors import QueuePaused
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory, LeadFactory

from .conftest import NOBODY_URL, drain

pytestmark = pytest.mark.django_db


def start(campaign, actor=None) -> Campaign:
    services.campaign_start(campaign_id=campaign.pk, actor=actor)
    drain(campaign)
    campaign.refresh_from_db()
    return campaign


def jobs_of(campaign, job_type):
    return Job.objects.filter(campaign=campaign, job_type=job_type)


def test_starting_a_campaign_enters_lead_sourcing_with_one_fetch_job(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase, campaign.progress) == ("running", Phase.LEAD_SOURCING, 0)
    assert list(Job.objects.filter(campaign=campaign).values_list("job_type", "status")) == [
        (JobType.FETCH_LEADS, JobStatus.PENDING)
    ]


def test_a_campaign_runs_through_every_phase_to_completed(campaign, alice):
    campaign = start(campaign, alice)

    assert (campaign.status, campaign.phase, campaign.progress) == ("completed", Phase.DONE, 100)
    leads = Lead.objects.filter(campaign=campaign)
    assert leads.count() == 20
    assert leads.values("email").distinct().count() == 20
    assert not leads.filter(email_status="unverified").exists()
    assert set(jobs_of(campaign, JobType.VERIFY_EMAIL).values_list("status", flat=True)) == {JobStatus.COMPLETED}
    assert jobs_of(campaign, JobType.VERIFY_EMAIL).count() == 20
    sendable = leads.filter(email_status__in=pipeline.SENDABLE_EMAIL_STATUSES)
    assert sendable.exists()
    enrich = jobs_of(campaign, JobType.ENRICH_LEAD)
    assert set(enrich.values_list("lead_id", flat=True)) == set(sendable.values_list("pk", flat=True))
    assert set(enrich.values_list("status", flat=True)) == {JobStatus.COMPLETED}
    for lead in sendable:
        assert lead.enrichment["line"] and lead.enrichment["provider"] == "openai"
        assert lead.enriched_at is not None
    assert not leads.exclude(email_status__in=pipeline.SENDABLE_EMAIL_STATUSES).filter(enriched_at__isnull=False)
    assert f"{sendable.count()} verified" in campaign.status_message
    assert CampaignEvent.objects.filter(campaign=campaign, action="campaign.completed", actor_label="pipeline").exists()


def test_invalid_addresses_are_neither_enriched_nor_mailed(campaign, alice):
    campaign = start(campaign, alice)
    invalid = Lead.objects.filter(campaign=campaign, email_status="invalid")
    assert invalid.exists(), "the sandbox marks about one address in ten invalid"
    assert all(lead.email.startswith("bad.") for lead in invalid)
    assert not Job.objects.filter(lead__in=invalid, job_type=JobType.ENRICH_LEAD).exists()


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


def test_one_bad_email_does_not_fail_the_campaign(campaign, alice, monkeypatch):
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
    assert lead.email_status == "invalid"
    job = Job.objects.get(lead=lead, job_type=JobType.VERIFY_EMAIL)
    assert job.status == JobStatus.FAILED
    assert "invalid email syntax" in job.last_error
    assert not Job.objects.filter(lead=lead, job_type=JobType.ENRICH_LEAD).exists()
    assert "1 job failed" in campaign.status_message


def test_a_transient_error_is_retried_and_the_job_then_succeeds(campaign, alice, monkeypatch):
    real = OpenAISandbox.personalize
    calls = []

    def personalize(self, lead):
        calls.append(lead["email"])
        if len(calls) == 1:
            raise ServerError("openai", "server_is_overloaded", 503)
        return real(self, lead)

    monkeypatch.setattr(OpenAISandbox, "personalize", personalize)
    campaign = start(campaign, alice)

    job = Job.objects.get(campaign=campaign, job_type=JobType.ENRICH_LEAD, lead__email=calls[0])
    assert (job.status, job.attempts) == (JobStatus.COMPLETED, 2)
    assert "server_is_overloaded" in job.last_error  # the earlier attempt's error stays visible
    assert campaign.status == "completed"


def test_a_campaign_from_a_csv_upload_uses_the_uploaded_leads(org, alice):
    import io

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
    }


def test_a_campaign_without_a_lead_source_is_refused_at_start_instead_of_failing_later(org, alice):
    campaign = CampaignFactory(organization=org, search_url="")
    with pytest.raises(ApplicationError, match="missing a lead source"):
        services.campaign_start(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("draft", "")
    assert not campaign.jobs.exists()


def test_the_instantly_channel_pushes_the_sendable_leads(org, alice):
    campaign = start(CampaignFactory(organization=org, channel="instantly", lead_count=12), alice)

    assert campaign.status == "completed"
    assert campaign.instantly_campaign_id
    push = jobs_of(campaign, JobType.PUSH_INSTANTLY).get()
    assert push.status == JobStatus.COMPLETED
    sendable = Lead.objects.filter(campaign=campaign, email_status__in=pipeline.SENDABLE_EMAIL_STATUSES).count()
    assert push.result["counts"]["leads_uploaded"] == sendable
    assert push.result["instantly_campaign_id"] == campaign.instantly_campaign_id


def test_outreach_is_done_at_once_when_no_launcher_is_registered(campaign, alice, monkeypatch):
    monkeypatch.delitem(OUTREACH_LAUNCHERS, "smtp", raising=False)
    campaign = start(campaign, alice)
    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE)
    assert not jobs_of(campaign, JobType.SEND_EMAIL).exists()


def test_outreach_is_done_at_once_when_no_lead_is_sendable(campaign, alice, monkeypatch):
    monkeypatch.setattr(MillionVerifierSandbox, "verify", lambda self, email: _verdict("invalid"))
    campaign = start(campaign, alice)
    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE)
    assert not jobs_of(campaign, JobType.ENRICH_LEAD).exists()
    assert not jobs_of(campaign, JobType.SEND_EMAIL).exists()


def _verdict(result):
    from integrations.millionverifier import VerificationResult

    return VerificationResult(result=result, quality="", subresult="", credits=None, raw={})


def test_a_long_search_is_fetched_over_several_runs_without_losing_pages(org, alice, settings):
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # no time budget: every run does one page and yields
    campaign = CampaignFactory(organization=org, lead_count=250, channel="instantly")
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    fetch = jobs_of(campaign, JobType.FETCH_LEADS).get()

    assert tasks.run_job(fetch.pk) == "continued"
    fetch.refresh_from_db()
    assert (fetch.status, fetch.attempts, fetch.result["next_page"]) == (JobStatus.PENDING, 0, 2)
    assert Lead.objects.filter(campaign=campaign).count() == 100

    drain(campaign)
    fetch.refresh_from_db()
    assert (fetch.status, fetch.result["leads"], fetch.result["pages"]) == (JobStatus.COMPLETED, 250, 3)
    assert Lead.objects.filter(campaign=campaign).count() == 250


def test_a_queue_pause_during_a_call_leaves_the_job_paused(campaign, alice, monkeypatch):
    def paused(self, email):
        raise QueuePaused("The queue is paused.", service="millionverifier")

    monkeypatch.setattr(MillionVerifierSandbox, "verify", paused)
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    tasks.run_job(jobs_of(campaign, JobType.FETCH_LEADS).get().pk)
    job = jobs_of(campaign, JobType.VERIFY_EMAIL).first()

    assert tasks.run_job(job.pk) == "paused"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error) == (JobStatus.PAUSED, 1, "")
    assert job.lead.email_status == "unverified"


def test_running_out_of_credit_trips_the_breaker_and_leaves_the_job_paused(campaign, alice, monkeypatch):
    def no_credit(self, email):
        raise QuotaExhaustedError("millionverifier", "insufficient credits", 402)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", no_credit)
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    tasks.run_job(jobs_of(campaign, JobType.FETCH_LEADS).get().pk)
    job = jobs_of(campaign, JobType.VERIFY_EMAIL).first()

    assert tasks.run_job(job.pk) == "paused"
    job.refresh_from_db()
    assert job.status == JobStatus.PAUSED
    assert "insufficient credits" in job.last_error
    assert QueueState.objects.get(pk=1).state == "paused"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "breaker:millionverifier")


def test_a_phase_ending_while_paused_moves_on_when_the_campaign_resumes(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    fetch = jobs_of(campaign, JobType.FETCH_LEADS).get()
    Job.objects.filter(pk=fetch.pk).update(status=JobStatus.PROCESSING)
    services.campaign_pause(campaign_id=campaign.pk, actor=alice)
    LeadFactory(campaign=campaign)

    assert job_finish(job=fetch, status=JobStatus.COMPLETED, result={})  # the in-flight call's outcome
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("paused", Phase.LEAD_SOURCING)

    services.campaign_resume(campaign_id=campaign.pk, actor=alice)
    tasks.dispatch_campaign(str(campaign.pk))  # what the resume's kick runs on a worker
    campaign.refresh_from_db()
    assert campaign.phase == Phase.VERIFICATION
    assert jobs_of(campaign, JobType.VERIFY_EMAIL).count() == 1


def test_progress_is_the_share_of_final_jobs_in_the_current_phase(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(status="running", phase=Phase.VERIFICATION)
    leads = LeadFactory.create_batch(4, campaign=campaign)
    jobs = [JobFactory(campaign=campaign, lead=lead, job_type=JobType.VERIFY_EMAIL) for lead in leads]
    Job.objects.filter(pk=jobs[0].pk).update(status=JobStatus.COMPLETED, finished_at=timezone.now())
    Job.objects.filter(pk=jobs[1].pk).update(status=JobStatus.FAILED, finished_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(updated_at=timezone.now() - pipeline.PROGRESS_REFRESH * 2)

    pipeline.pipeline_advance(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert (campaign.phase, campaign.progress) == (Phase.VERIFICATION, 50)


def test_cancelling_a_campaign_cancels_its_active_jobs_and_drops_late_outcomes(campaign, alice):
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    tasks.run_job(jobs_of(campaign, JobType.FETCH_LEADS).get().pk)
    in_flight = jobs_of(campaign, JobType.VERIFY_EMAIL).first()
    Job.objects.filter(pk=in_flight.pk).update(status=JobStatus.PROCESSING)

    services.campaign_cancel(campaign_id=campaign.pk, actor=alice)
    assert set(jobs_of(campaign, JobType.VERIFY_EMAIL).values_list("status", flat=True)) == {JobStatus.CANCELLED}
    assert jobs_of(campaign, JobType.FETCH_LEADS).get().status == JobStatus.COMPLETED

    assert not job_finish(job=in_flight, status=JobStatus.COMPLETED, result={"late": True})
    in_flight.refresh_from_db()
    assert in_flight.status == JobStatus.CANCELLED


def test_the_fan_out_of_a_phase_is_harmless_when_repeated(campaign):
    LeadFactory.create_batch(3, campaign=campaign)
    assert pipeline._fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None) == 3
    assert pipeline._fan_out(campaign, JobType.VERIFY_EMAIL, email_statuses=None) == 0
    assert jobs_of(campaign, JobType.VERIFY_EMAIL).count() == 3


def test_a_verified_lead_is_not_verified_twice(campaign, monkeypatch):
    lead = LeadFactory(campaign=campaign, email_status="valid")
    job = JobFactory(campaign=campaign, lead=lead, job_type=JobType.VERIFY_EMAIL)
    monkeypatch.setattr(MillionVerifierSandbox, "verify", lambda *a: pytest.fail("paid twice"))
    assert handlers.verify_email(job=job) == {"email_status": "valid", "skipped": "already verified"}
