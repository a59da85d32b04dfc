"""The admin pages of jobs and leads, and the job counts shown on a campaign page."""

import pytest

from campaigns.admin_jobs_leads import job_counts_for
from campaigns.states import JobStatus, JobType
from tests.factories import CampaignFactory, JobFactory, LeadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.pipeline.urls")]


@pytest.fixture
def campaign(org):
    campaign = CampaignFactory(organization=org, name="Q4 <b>CTOs</b>", status="running")
    leads = LeadFactory.create_batch(3, campaign=campaign, company="Initech")
    JobFactory(
        campaign=campaign,
        job_type=JobType.VERIFY_EMAIL,
        status=JobStatus.COMPLETED,
        range_start=leads[0].pk,
        range_end=leads[-1].pk,
        size=3,
    )
    JobFactory(campaign=campaign, job_type=JobType.FETCH_LEADS, status=JobStatus.FAILED, last_error="apollo: down")
    return campaign


def test_the_job_list_shows_jobs_without_a_query_per_row(
    admin_client_logged_in, campaign, django_assert_max_num_queries
):
    # Besides the list, the operations banner reads the latch, the sandbox switches and (here,
    # with Redis emptied before each test) each breaker's last event: a constant either way.
    with django_assert_max_num_queries(20):
        response = admin_client_logged_in.get("/admin/campaigns/job/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "apollo: down" in html
    assert "Q4 &lt;b&gt;CTOs&lt;/b&gt;" in html


def test_the_job_list_filters_by_type_status_and_campaign(admin_client_logged_in, campaign, org):
    JobFactory(campaign=CampaignFactory(organization=org, name="Other"), job_type=JobType.FETCH_LEADS)
    response = admin_client_logged_in.get(
        "/admin/campaigns/job/", {"job_type": "fetch_leads", "status": "failed", "campaign": str(campaign.pk)}
    )
    assert response.status_code == 200
    assert list(response.context["cl"].result_list.values_list("job_type", "status")) == [("fetch_leads", "failed")]
    assert admin_client_logged_in.get("/admin/campaigns/job/", {"campaign": "nope"}).status_code == 200


def test_jobs_are_read_only_in_the_admin(admin_client_logged_in, campaign):
    job = campaign.jobs.first()
    assert admin_client_logged_in.get("/admin/campaigns/job/add/").status_code == 403
    page = admin_client_logged_in.get(f"/admin/campaigns/job/{job.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client_logged_in.post(f"/admin/campaigns/job/{job.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_lead_list_searches_and_filters(admin_client_logged_in, campaign):
    LeadFactory(campaign=campaign, email="zed@globex.example", company="Globex", email_status="valid")
    found = admin_client_logged_in.get("/admin/campaigns/lead/", {"q": "globex"})
    assert [lead.email for lead in found.context["cl"].result_list] == ["zed@globex.example"]
    valid = admin_client_logged_in.get("/admin/campaigns/lead/", {"email_status": "valid", "source": "apollo"})
    assert [lead.email for lead in valid.context["cl"].result_list] == ["zed@globex.example"]


def test_job_counts_for_a_campaign_take_one_query(campaign, django_assert_num_queries):
    with django_assert_num_queries(1):
        counts = job_counts_for(campaign)
    assert counts == {"pending": 0, "processing": 0, "paused": 0, "completed": 1, "failed": 1, "cancelled": 0}


def campaign_choices(response) -> list[str]:
    [spec] = [spec for spec in response.context["cl"].filter_specs if getattr(spec, "parameter_name", "") == "campaign"]
    return [name for _, name in spec.lookup_choices]


def test_the_job_list_offers_the_campaigns_that_have_jobs(admin_client_logged_in, campaign, org):
    done = CampaignFactory(organization=org, name="Finished last week", status="completed")
    JobFactory(campaign=done, job_type=JobType.FETCH_LEADS, status=JobStatus.COMPLETED)
    CampaignFactory(organization=org, name="Draft without jobs")

    choices = campaign_choices(admin_client_logged_in.get("/admin/campaigns/job/"))

    assert sorted(choices) == sorted(["Finished last week", "Q4 <b>CTOs</b>"])


def test_the_lead_list_offers_the_campaigns_that_have_leads(admin_client_logged_in, campaign, org):
    JobFactory(campaign=CampaignFactory(organization=org, name="Jobs but no leads"), job_type=JobType.FETCH_LEADS)

    assert campaign_choices(admin_client_logged_in.get("/admin/campaigns/lead/")) == ["Q4 <b>CTOs</b>"]


def test_leads_are_read_only_in_the_admin(admin_client_logged_in, campaign):
    lead = LeadFactory(campaign=campaign, email="ro@example.org")
    page = admin_client_logged_in.get(f"/admin/campaigns/lead/{lead.pk}/change/")
    assert page.status_code == 200 and b'name="email"' not in page.content  # shown, not editable
    posted = admin_client_logged_in.post(f"/admin/campaigns/lead/{lead.pk}/change/", {"email": "x@example.org"})
    assert posted.status_code == 403
    assert admin_client_logged_in.post(f"/admin/campaigns/lead/{lead.pk}/delete/", {"post": "yes"}).status_code == 403
    lead.refresh_from_db()
    assert lead.email == "ro@example.org"
