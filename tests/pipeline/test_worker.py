"""The pipeline on Celery's in-process worker, with the real Redis broker: messages sent after
commit, claims, retries and phase changes as in production."""

import threading
import time
from collections import Counter

import pytest

from campaigns import services
from campaigns.models import Campaign, Job, Lead
from campaigns.states import CAMPAIGN_FINAL_STATUSES, JobStatus, JobType, Phase
from integrations.sandbox import MillionVerifierSandbox
from queue_control.services import queue_pause, queue_resume
from tests.factories import CampaignFactory, MembershipFactory, OrganizationFactory, UserFactory

from .conftest import NOBODY_URL, SEARCH_URL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_until_final(campaign_id, timeout: float = 60) -> Campaign:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        campaign = Campaign.objects.get(pk=campaign_id)
        if campaign.status in CAMPAIGN_FINAL_STATUSES:
            return campaign
        time.sleep(0.2)
    raise AssertionError(f"campaign still {campaign.status}/{campaign.phase} after {timeout}s")


@pytest.fixture
def owner():
    org = OrganizationFactory(name="Acme", slug="acme")
    return MembershipFactory(user=UserFactory(username="alice"), organization=org, role="owner")


def test_a_campaign_runs_to_completed_on_a_worker(celery_worker, owner, settings):
    settings.ENGINE_BATCH_SIZE = 4
    campaign = CampaignFactory(
        organization=owner.organization, search_url=SEARCH_URL, lead_count=15, send_rate_per_minute=60_000
    )
    services.campaign_start(campaign_id=campaign.pk, actor=owner.user)

    campaign = wait_until_final(campaign.pk)
    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE), campaign.status_error
    assert Lead.objects.filter(campaign=campaign).count() == 15
    for job_type in (JobType.FETCH_LEADS, JobType.VERIFY_EMAIL, JobType.ENRICH_LEAD, JobType.SEND_EMAIL):
        statuses = set(Job.objects.filter(campaign=campaign, job_type=job_type).values_list("status", flat=True))
        assert statuses == {JobStatus.COMPLETED}, job_type
    assert sorted(
        Job.objects.filter(campaign=campaign, job_type=JobType.VERIFY_EMAIL).values_list("size", flat=True)
    ) == [3, 4, 4, 4]
    assert not Job.objects.filter(campaign=campaign, status__in=("pending", "processing", "paused")).exists()


def test_a_search_that_finds_nobody_fails_on_a_worker(celery_worker, owner):
    campaign = CampaignFactory(organization=owner.organization, search_url=NOBODY_URL)
    services.campaign_start(campaign_id=campaign.pk, actor=owner.user)

    campaign = wait_until_final(campaign.pk)
    assert campaign.status == "failed"
    assert campaign.status_error == "The lead source returned no leads for this search."


def test_an_unreachable_lead_source_fails_the_campaign_after_retries_on_a_worker(celery_worker, owner, settings):
    settings.SANDBOX_FAIL = ["apollo"]
    settings.BREAKERS = {**settings.BREAKERS, "apollo": {"threshold": 100, "window": 60}}
    campaign = CampaignFactory(organization=owner.organization, search_url=SEARCH_URL)
    services.campaign_start(campaign_id=campaign.pk, actor=owner.user)

    campaign = wait_until_final(campaign.pk)
    assert campaign.status == "failed"
    assert "failure injected" in campaign.status_error
    fetch = Job.objects.get(campaign=campaign, job_type=JobType.FETCH_LEADS)
    assert (fetch.status, fetch.attempts) == (JobStatus.FAILED, settings.JOB_MAX_ATTEMPTS)


def test_an_operators_pause_racing_a_batchs_calls_stops_them_and_the_resume_pays_for_none_twice(
    celery_worker, owner, staff, settings, monkeypatch
):
    """The real race, on a worker: calls of a verification batch are in flight (100 ms each, two at
    a time) when an operator's queue_pause commits in another thread. No call starts after the
    pause returns, every call already made has its verdict stored, the job is paused with its
    attempt given back, and after the resume nobody is verified twice."""
    settings.ENGINE_BATCH_SIZE = 60
    settings.PROVIDER_CONCURRENCY = {**settings.PROVIDER_CONCURRENCY, "millionverifier": 2}
    real, calls, lock, verifying = MillionVerifierSandbox.verify, [], threading.Lock(), threading.Event()

    def verify(self, email):
        with lock:
            calls.append((time.monotonic(), email))
        verifying.set()
        time.sleep(0.1)  # the provider's network time: the pause lands while calls are in flight
        return real(self, email)

    monkeypatch.setattr(MillionVerifierSandbox, "verify", verify)
    campaign = CampaignFactory(
        organization=owner.organization, search_url=SEARCH_URL, lead_count=60, send_rate_per_minute=60_000
    )
    services.campaign_start(campaign_id=campaign.pk, actor=owner.user)
    assert verifying.wait(30), "the batch never started"
    time.sleep(0.2)  # a few calls answered, two in flight
    queue_pause(reason="maintenance", actor=staff)
    paused_at = time.monotonic()

    # The cascade marked the job paused at once; its run ends when the calls in flight have
    # answered and been stored, and it gives its attempt back then.
    job = Job.objects.get(campaign=campaign, job_type=JobType.VERIFY_EMAIL)
    deadline = time.monotonic() + 30
    while Job.objects.filter(pk=job.pk, attempts__gt=0).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PAUSED, 0)
    assert [email for started, email in calls if started > paused_at] == []  # none started after the pause
    stored = Lead.objects.filter(campaign=campaign).exclude(email_status="unverified").count()
    assert 0 < stored == len(calls) < 60  # what was paid for is kept, the rest waits
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"

    queue_resume(actor=staff)
    campaign = wait_until_final(campaign.pk)
    assert campaign.status == "completed", campaign.status_error
    assert set(Counter(email for _, email in calls).values()) == {1}  # nobody verified twice
    assert len(calls) == 60
