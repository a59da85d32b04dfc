"""The pipeline endpoints: details, results (JSON and CSV), jobs, cleanup and the CSV upload."""

import csv
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from campaigns import api_leads, tasks
from campaigns.models import Campaign, CampaignEvent, Job, Lead
from campaigns.states import JobStatus, JobType
from integrations.sandbox import InstantlySandbox
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory, LeadFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.pipeline.urls")]


def url(campaign, suffix):
    return f"/api/v1/campaigns/{campaign.pk}/{suffix}"


@pytest.fixture
def campaign(org):
    campaign = CampaignFactory(organization=org, status="running", phase="enrichment")
    for status in ("valid", "valid", "catch_all", "invalid", "unverified"):
        LeadFactory(campaign=campaign, email_status=status)
    Lead.objects.filter(campaign=campaign, email_status="valid").update(
        enrichment={"line": "Hi", "provider": "openai"}, enriched_at=timezone.now()
    )
    JobFactory(campaign=campaign, job_type=JobType.FETCH_LEADS, status=JobStatus.COMPLETED)
    JobFactory(campaign=campaign, job_type=JobType.VERIFY_EMAIL, status=JobStatus.FAILED, last_error="boom")
    JobFactory(campaign=campaign, job_type=JobType.ENRICH_LEAD, status=JobStatus.PENDING)
    return campaign


def csv_file(text: str, name: str = "leads.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode(), content_type="text/csv")


# --- details -----------------------------------------------------------------------------------


def test_details_show_the_campaign_with_its_lead_and_job_figures(alice_client, campaign):
    response = alice_client.get(url(campaign, "details"))
    assert response.status_code == 200
    data = response.json()
    assert data["campaign"]["id"] == str(campaign.pk)
    assert data["leads"] == {
        "total": 5,
        "with_email": 5,
        "enriched": 2,
        "sendable": 3,
        "by_email_status": {"unverified": 1, "valid": 2, "invalid": 1, "catch_all": 1, "unknown": 0},
        "errors": 1,
    }
    assert data["jobs"] == {"pending": 1, "processing": 0, "paused": 0, "completed": 1, "failed": 1, "cancelled": 0}
    assert (data["analytics"], data["analytics_error"]) == (None, None)


def test_details_include_the_synced_instantly_analytics(alice_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(instantly_campaign_id="inst-1", status="running")
    data = alice_client.get(url(campaign, "details")).json()
    assert (data["analytics"], data["analytics_synced_at"]) == (None, None)
    assert "not been synced yet" in data["analytics_error"]

    assert tasks.sync_instantly_analytics() == {"synced": 1, "errors": 0}
    data = alice_client.get(url(campaign, "details")).json()
    assert data["analytics"]["campaign_id"] == "inst-1"
    assert data["analytics_synced_at"] is not None
    assert data["analytics_error"] is None


def test_details_answer_with_analytics_error_when_the_sync_failed(alice_client, campaign, settings):
    Campaign.objects.filter(pk=campaign.pk).update(instantly_campaign_id="inst-1", status="running")
    tasks.sync_instantly_analytics()
    synced = alice_client.get(url(campaign, "details")).json()
    settings.SANDBOX_FAIL = ["instantly"]
    assert tasks.sync_instantly_analytics() == {"synced": 0, "errors": 1}
    response = alice_client.get(url(campaign, "details"))
    assert response.status_code == 200
    assert "failure injected" in response.json()["analytics_error"]
    # The last figures read stay, with when they were read.
    assert response.json()["analytics"] == synced["analytics"]
    assert response.json()["analytics_synced_at"] == synced["analytics_synced_at"]
    assert response.json()["leads"]["total"] == 5


def test_details_never_call_instantly(alice_client, campaign, monkeypatch):
    """A GET reads what the sync stored: with the queue paused it must not reach the provider."""
    Campaign.objects.filter(pk=campaign.pk).update(instantly_campaign_id="inst-1", status="running")
    tasks.sync_instantly_analytics()
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    monkeypatch.setattr(InstantlySandbox, "campaign_analytics", lambda *a, **k: pytest.fail("called from a GET"))
    data = alice_client.get(url(campaign, "details")).json()
    assert data["analytics"]["campaign_id"] == "inst-1"


# --- results -----------------------------------------------------------------------------------


def test_results_list_the_campaigns_leads_paginated(alice_client, campaign):
    response = alice_client.get(url(campaign, "results"), {"page_size": 2})
    assert response.status_code == 200
    assert set(response.data) == {"next", "previous", "results"}  # no count: no COUNT(*) of the leads
    assert len(response.data["results"]) == 2
    assert set(response.data["results"][0]) >= {"email", "email_status", "enrichment", "company"}
    seen = [row["email"] for row in response.data["results"]]
    page = response.data
    while page["next"]:
        page = alice_client.get(page["next"]).data
        seen += [row["email"] for row in page["results"]]
    assert len(seen) == len(set(seen)) == 5
    assert page["previous"] is not None
    assert alice_client.get(url(campaign, "results"), {"page_size": 2, "page": 4}).status_code == 404


def test_results_filter_by_email_status_and_search(alice_client, campaign):
    valid = alice_client.get(url(campaign, "results"), {"email_status": "valid"}).data
    assert len(valid["results"]) == 2 and {row["email_status"] for row in valid["results"]} == {"valid"}
    both = alice_client.get(url(campaign, "results") + "?email_status=valid&email_status=catch_all").data
    assert len(both["results"]) == 3
    lead = Lead.objects.filter(campaign=campaign).first()
    found = alice_client.get(url(campaign, "results"), {"search": lead.email}).data
    assert [row["email"] for row in found["results"]] == [lead.email]


def test_results_refuse_an_unknown_email_status(alice_client, campaign):
    response = alice_client.get(url(campaign, "results"), {"email_status": "maybe"})
    assert response.status_code == 400
    assert "email_status" in response.data


@pytest.mark.parametrize("suffix", ["results?format=csv", "results.csv"])
def test_results_export_as_streaming_csv(alice_client, campaign, suffix):
    response = alice_client.get(url(campaign, suffix))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(api_leads.CSV_FIELDS)
    assert len(rows) == 6
    assert {row[0] for row in rows[1:]} == set(Lead.objects.filter(campaign=campaign).values_list("email", flat=True))


def test_the_csv_export_honours_filters_and_defuses_formulas(alice_client, campaign):
    Lead.objects.filter(campaign=campaign, email_status="valid").update(company="=HYPERLINK(1)", phone="+1 555 0100")
    response = alice_client.get(url(campaign, "results.csv"), {"email_status": "valid"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 2
    assert rows[0]["company"] == "'=HYPERLINK(1)"
    assert rows[0]["phone"] == "+1 555 0100"


def test_the_csv_export_of_another_organizations_campaign_is_a_404(charlie_client, campaign):
    assert charlie_client.get(url(campaign, "results.csv")).status_code == 404


# --- jobs --------------------------------------------------------------------------------------


def test_jobs_are_listed_and_filtered_by_status_and_type(alice_client, campaign):
    data = alice_client.get(url(campaign, "jobs")).data
    assert len(data["results"]) == 3 and data["next"] is None
    failed = alice_client.get(url(campaign, "jobs"), {"status": "failed"}).data["results"]
    assert [(job["job_type"], job["last_error"]) for job in failed] == [("verify_email", "boom")]
    fetch = alice_client.get(url(campaign, "jobs"), {"job_type": "fetch_leads"}).data
    assert [job["job_type"] for job in fetch["results"]] == ["fetch_leads"]


@pytest.mark.parametrize("suffix", ["jobs", "results"])
def test_list_endpoints_take_the_same_number_of_queries_whatever_the_page_size(alice_client, campaign, suffix):
    for lead in Lead.objects.filter(campaign=campaign):
        JobFactory(campaign=campaign, job_type=JobType.ENRICH_LEAD, range_start=lead.pk, range_end=lead.pk, size=1)
    LeadFactory.create_batch(20, campaign=campaign)

    counts = []
    for size in (1, 25):
        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(url(campaign, suffix), {"page_size": size}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


# --- cleanup -----------------------------------------------------------------------------------


def test_cleanup_deletes_this_campaigns_old_final_jobs(bob_client, campaign, org):
    Job.objects.filter(campaign=campaign).update(updated_at=timezone.now() - timedelta(days=10))
    other = JobFactory(campaign=CampaignFactory(organization=org), status=JobStatus.COMPLETED)
    Job.objects.filter(pk=other.pk).update(updated_at=timezone.now() - timedelta(days=10))

    response = bob_client.post(url(campaign, "cleanup"), {"days": 7}, format="json")
    assert response.status_code == 200
    assert (response.data["deleted"], response.data["by_status"]) == (2, {"completed": 1, "failed": 1})
    assert list(Job.objects.filter(campaign=campaign).values_list("status", flat=True)) == ["pending"]
    assert Job.objects.filter(pk=other.pk).exists()


def test_cleanup_defaults_to_the_retention_period(bob_client, campaign, settings):
    response = bob_client.post(url(campaign, "cleanup"), {}, format="json")
    assert response.status_code == 200
    assert response.data["older_than_days"] == settings.JOB_RETENTION_DAYS
    assert response.data["deleted"] == 0


@pytest.mark.parametrize("days", [-1, "soon", 10**9])
def test_cleanup_refuses_bad_days_naming_the_field(bob_client, campaign, days):
    response = bob_client.post(url(campaign, "cleanup"), {"days": days}, format="json")
    assert response.status_code == 400
    assert "days" in response.data
    assert Job.objects.filter(campaign=campaign).count() == 3


def test_a_viewer_cannot_clean_up(viewer_client, campaign):
    Job.objects.filter(campaign=campaign).update(updated_at=timezone.now() - timedelta(days=100))
    assert viewer_client.post(url(campaign, "cleanup"), {"days": 1}, format="json").status_code == 403
    assert Job.objects.filter(campaign=campaign).count() == 3


# --- CSV upload --------------------------------------------------------------------------------


@pytest.fixture
def draft(org):
    return CampaignFactory(organization=org, search_url="")


def test_a_good_csv_file_becomes_the_campaigns_leads(alice_client, draft):
    body = (
        "Email,First Name,last_name,company,linkedin_url,phone,notes\r\n"
        "Ann@Example.org,Ann,Lee,Acme,https://www.linkedin.com/in/ann,+1 555 0100,vip\r\n"
        "bob@example.org,Bob,,,,,\r\n"
        "\r\n"
        "ann@example.org,Ann again,,,,,\r\n"
        "carla@example.org\r\n"
    )
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 201, response.data
    assert response.data == {
        "file_name": "leads.csv",
        "total_records": 3,
        "imported": 3,
        "duplicates": 1,
        "duplicate_lines": [5],
        "ignored_columns": ["notes"],
    }
    draft.refresh_from_db()
    assert (draft.file_name, draft.total_records) == ("leads.csv", 3)
    ann = Lead.objects.get(campaign=draft, email="ann@example.org")
    assert (ann.first_name, ann.company, ann.source, ann.email_status) == ("Ann", "Acme", "csv", "unverified")
    assert ann.linkedin_url == "https://www.linkedin.com/in/ann"
    assert CampaignEvent.objects.filter(campaign=draft, action="campaign.leads_uploaded").exists()


def test_a_new_upload_replaces_the_previous_one(alice_client, draft):
    alice_client.post(url(draft, "leads/upload"), {"file": csv_file("email\na@example.org\n")}, format="multipart")
    response = alice_client.post(
        url(draft, "leads/upload"), {"file": csv_file("email\nb@example.org\n", "second.csv")}, format="multipart"
    )
    assert response.status_code == 201
    assert list(Lead.objects.filter(campaign=draft).values_list("email", flat=True)) == ["b@example.org"]
    draft.refresh_from_db()
    assert draft.file_name == "second.csv"


def test_a_file_with_bad_rows_is_refused_listing_each_line_and_nothing_is_written(alice_client, draft):
    LeadFactory(campaign=draft, email="kept@example.org", source="csv")
    body = (
        "email,first_name,linkedin_url\n"
        "good@example.org,Good,\n"
        "not-an-email,Bad,\n"
        ",Missing,\n"
        "ok@example.org,Ok,javascript:alert(1)\n"
        f"long@example.org,{'x' * 256},\n"
    )
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 400
    assert response.data["error_count"] == 4
    assert [(error["line"], error["field"]) for error in response.data["errors"]] == [
        (3, "email"),
        (4, "email"),
        (5, "linkedin_url"),
        (6, "first_name"),
    ]
    assert "'not-an-email' is not a valid email address" in response.data["errors"][0]["message"]
    assert "nothing was imported" in response.data["file"][0]
    assert list(Lead.objects.filter(campaign=draft).values_list("email", flat=True)) == ["kept@example.org"]
    draft.refresh_from_db()
    assert (draft.file_name, draft.total_records) == ("", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name,company\nAnn,Acme\n", "The header must contain an email column; found: name, company."),
        ("", "The submitted file is empty."),
        ("\ufeff", "The file is empty; it needs a header row with an email column."),
        ("email\n", "The file has a header but no lead rows."),
        ("email,Email\na@example.org,b@example.org\n", "The header repeats the column(s): email."),
    ],
)
def test_a_file_without_usable_rows_is_refused_clearly(alice_client, draft, body, message):
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 400
    assert response.data["file"][0].startswith(message)
    assert not Lead.objects.filter(campaign=draft).exists()


def test_a_file_that_is_not_utf8_is_refused(alice_client, draft):
    upload = SimpleUploadedFile("leads.csv", "email\nzoë@example.org\n".encode("latin-1"))
    response = alice_client.post(url(draft, "leads/upload"), {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert "not UTF-8" in response.data["file"][0]


def test_an_upload_without_a_file_names_the_field(alice_client, draft):
    response = alice_client.post(url(draft, "leads/upload"), {}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.data


def test_leads_can_be_uploaded_only_to_a_draft(alice_client, campaign):
    response = alice_client.post(
        url(campaign, "leads/upload"), {"file": csv_file("email\na@b.org\n")}, format="multipart"
    )
    assert response.status_code == 409
    assert response.data["current_status"] == "running"


def test_a_viewer_cannot_upload(viewer_client, draft):
    response = viewer_client.post(
        url(draft, "leads/upload"), {"file": csv_file("email\na@b.org\n")}, format="multipart"
    )
    assert response.status_code == 403
    assert not Lead.objects.filter(campaign=draft).exists()


def test_a_large_file_is_imported_in_batches(alice_client, draft, monkeypatch):
    monkeypatch.setattr("campaigns.csv_import.BATCH_SIZE", 100)
    body = "email\n" + "".join(f"p{i}@example.org\n" for i in range(1050))
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 201
    assert Lead.objects.filter(campaign=draft).count() == 1050


def test_a_large_upload_kept_on_disk_by_django_is_imported_too(alice_client, draft, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64  # Django streams larger uploads to a temporary file
    body = "email,first_name\n" + "".join(f"p{i}@example.org,P{i}\n" for i in range(300))
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 201, response.data
    assert Lead.objects.filter(campaign=draft).count() == 300


def test_a_bad_row_after_batches_were_written_still_writes_nothing(alice_client, draft, monkeypatch):
    monkeypatch.setattr("campaigns.csv_import.BATCH_SIZE", 100)
    body = "email\n" + "".join(f"p{i}@example.org\n" for i in range(250)) + "broken\n"
    response = alice_client.post(url(draft, "leads/upload"), {"file": csv_file(body)}, format="multipart")
    assert response.status_code == 400
    assert response.data["errors"] == [
        {"line": 252, "field": "email", "message": "'broken' is not a valid email address"}
    ]
    assert not Lead.objects.filter(campaign=draft).exists()


# --- isolation and permissions -----------------------------------------------------------------

ENDPOINTS = [
    ("get", "details"),
    ("get", "results"),
    ("get", "results.csv"),
    ("get", "jobs"),
    ("post", "cleanup"),
    ("post", "leads/upload"),
]


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_another_organizations_campaign_is_a_404(charlie_client, campaign, method, suffix):
    assert getattr(charlie_client, method)(url(campaign, suffix)).status_code == 404


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_unknown_and_malformed_campaign_ids_are_a_404(alice_client, method, suffix):
    for campaign_id in ("7d2c4a52-0000-4000-8000-000000000000", "not-a-uuid"):
        assert getattr(alice_client, method)(f"/api/v1/campaigns/{campaign_id}/{suffix}").status_code == 404


@pytest.mark.parametrize(("method", "suffix"), ENDPOINTS)
def test_anonymous_requests_are_refused(anon_client, campaign, method, suffix):
    assert getattr(anon_client, method)(url(campaign, suffix)).status_code in (401, 403)


def test_the_openapi_schema_describes_the_endpoints(capsys):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    upload = paths["/api/v1/campaigns/{campaign_pk}/leads/upload/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "400", "404", "409"} <= set(upload["responses"])
    results = paths["/api/v1/campaigns/{campaign_pk}/results/"]["get"]
    assert {"application/json", "text/csv"} <= set(results["responses"]["200"]["content"])
    assert "email_status" in {parameter["name"] for parameter in results["parameters"]}
    assert "analytics_error" in schema["components"]["schemas"]["CampaignDetails"]["properties"]
    assert "/api/v1/campaigns/{id}/details/" in paths
    pipeline = [p for p in paths if p.rsplit("/", 2)[-2] in ("details", "results", "jobs", "cleanup", "upload")]
    assert len(pipeline) == 5  # results.csv is the results list's format suffix, not a path of its own
    operation_ids = [operation["operationId"] for item in paths.values() for operation in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    err = capsys.readouterr().err
    assert "Warning [" not in err  # no view the generator could not read (the enum-naming notes are global)
    assert "Error" not in err
