import threading
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.models import Campaign, CampaignEvent
from campaigns.services import campaign_missing_for_start
from campaigns.states import CAMPAIGN_ACTIONS, CAMPAIGN_TRANSITIONS, campaign_actions_allowed
from tests.factories import CampaignFactory, MembershipFactory

URL = "/api/v1/campaigns/"
SEARCH_URL = "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Germany"


def detail(campaign_id, suffix=""):
    return f"{URL}{campaign_id}/{suffix}"


def valid_payload(**overrides):
    return {
        "name": "Q4 CTOs",
        "description": "Outbound to German CTOs",
        "search_url": SEARCH_URL,
        "lead_count": 20,
        "from_name": "Alice",
        "from_email": "alice@example.com",
        "subject_template": "Hi {{ first_name }}",
        "body_template": "Hello",
        **overrides,
    }


# --- create -----------------------------------------------------------------------------------


def test_it_creates_a_campaign_in_the_users_organization(alice_client, org):
    response = alice_client.post(URL, valid_payload(), format="json")
    assert response.status_code == 201, response.data
    campaign = Campaign.objects.get(pk=response.data["id"])
    assert campaign.organization == org
    assert campaign.status == "draft"
    assert response.data["allowed_transitions"] == ["scheduled", "running", "cancelled"]
    assert CampaignEvent.objects.filter(campaign=campaign, action="campaign.created").count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 256),
        ("description", "d" * 10_001),
        ("lead_count", 0),
        ("lead_count", 50_001),
        ("lead_count", "many"),
        ("search_url", "http://app.apollo.io/#/people?personTitles[]=cto"),
        ("search_url", "https://evil.example.com/#/people?personTitles[]=cto"),
        ("search_url", "not a url"),
        ("from_email", "not-an-email"),
        ("send_rate_per_minute", 0),
        ("send_rate_per_minute", 600_001),
        ("channel", "carrier-pigeon"),
        ("status", "running"),
        ("organization", "globex"),
    ],
)
def test_it_refuses_invalid_input_naming_the_field_and_writes_nothing(alice_client, other_org, field, value):
    response = alice_client.post(URL, valid_payload(**{field: value}), format="json")
    assert response.status_code == 400
    assert field in response.data
    assert Campaign.objects.count() == 0
    assert CampaignEvent.objects.count() == 0


def test_it_requires_a_name(alice_client):
    payload = valid_payload()
    del payload["name"]
    response = alice_client.post(URL, payload, format="json")
    assert response.status_code == 400
    assert "name" in response.data
    assert Campaign.objects.count() == 0


def test_it_refuses_anonymous_requests(anon_client, alice):
    assert anon_client.get(URL).status_code in (401, 403)
    assert anon_client.post(URL, valid_payload(), format="json").status_code in (401, 403)
    assert Campaign.objects.count() == 0


def test_a_viewer_can_read_but_not_create(org):
    viewer = MembershipFactory(organization=org, role="viewer").user
    client = APIClient()
    client.force_authenticate(viewer)
    assert client.get(URL).status_code == 200
    assert client.post(URL, valid_payload(), format="json").status_code == 403
    assert Campaign.objects.count() == 0


def test_it_stores_xss_and_sql_text_literally(alice_client):
    name = "<script>alert('x')</script>'; DROP TABLE campaigns_campaign; --"
    response = alice_client.post(URL, valid_payload(name=name, description="Robert'); --"), format="json")
    assert response.status_code == 201
    campaign = Campaign.objects.get(pk=response.data["id"])
    assert campaign.name == name
    assert campaign.description == "Robert'); --"
    assert alice_client.get(detail(campaign.pk)).data["name"] == name


def test_it_accepts_the_longest_allowed_values(alice_client):
    response = alice_client.post(
        URL,
        valid_payload(name="n" * 255, description="d" * 10_000, lead_count=50_000, send_rate_per_minute=600_000),
        format="json",
    )
    assert response.status_code == 201
    campaign = Campaign.objects.get()
    # The send rate may reach CAMPAIGN_MAX_SEND_RATE_PER_MINUTE (10,000 msg/s): the shared bucket enforces it.
    assert (len(campaign.name), campaign.send_rate_per_minute) == (255, 600_000)


# --- list -------------------------------------------------------------------------------------


def test_the_list_is_empty_for_a_new_organization(alice_client):
    response = alice_client.get(URL)
    assert response.status_code == 200
    assert response.data["count"] == 0
    assert response.data["results"] == []


def test_the_list_paginates(alice_client, org):
    CampaignFactory.create_batch(7, organization=org)
    response = alice_client.get(URL, {"page_size": 3})
    assert response.data["count"] == 7
    assert len(response.data["results"]) == 3
    page3 = alice_client.get(URL, {"page_size": 3, "page": 3})
    assert len(page3.data["results"]) == 1
    assert alice_client.get(URL, {"page_size": 3, "page": 9}).status_code == 404


def test_the_list_filters_by_status_phase_search_and_created_range(alice_client, org):
    CampaignFactory(organization=org, name="Alpha", status="running", phase="verification")
    CampaignFactory(organization=org, name="Beta", status="draft")
    CampaignFactory(organization=org, name="Gamma", status="completed", phase="done")
    names = lambda response: sorted(c["name"] for c in response.data["results"])  # noqa: E731
    assert names(alice_client.get(URL, {"status": "running"})) == ["Alpha"]
    assert names(alice_client.get(URL, {"status": ["running", "draft"]})) == ["Alpha", "Beta"]
    assert names(alice_client.get(URL, {"phase": "done"})) == ["Gamma"]
    assert names(alice_client.get(URL, {"search": "amm"})) == ["Gamma"]
    assert names(alice_client.get(URL, {"created_after": "2000-01-01T00:00:00Z"})) == ["Alpha", "Beta", "Gamma"]
    assert names(alice_client.get(URL, {"created_before": "2000-01-01T00:00:00Z"})) == []
    ordered = alice_client.get(URL, {"ordering": "name"})
    assert [c["name"] for c in ordered.data["results"]] == ["Alpha", "Beta", "Gamma"]
    assert alice_client.get(URL, {"status": "bogus"}).status_code == 400


def test_the_list_uses_a_constant_number_of_queries(alice_client, org):
    CampaignFactory.create_batch(2, organization=org)
    with CaptureQueriesContext(connection) as few:
        alice_client.get(URL)
    CampaignFactory.create_batch(20, organization=org)
    with CaptureQueriesContext(connection) as many:
        alice_client.get(URL, {"page_size": 100})
    assert len(many) == len(few)


# --- retrieve, isolation ----------------------------------------------------------------------


def test_it_retrieves_a_campaign(alice_client, org):
    campaign = CampaignFactory(organization=org)
    response = alice_client.get(detail(campaign.pk))
    assert response.status_code == 200
    assert response.data["id"] == str(campaign.pk)
    assert response.data["organization"] == "acme"


@pytest.mark.parametrize("campaign_id", [uuid.uuid4(), "not-a-uuid", "1", "%00", "' OR 1=1 --"])
def test_unknown_and_malformed_ids_answer_404(alice_client, campaign_id):
    assert alice_client.get(detail(campaign_id)).status_code == 404


def test_another_organizations_campaign_answers_404_everywhere(charlie_client, org):
    campaign = CampaignFactory(organization=org)
    assert charlie_client.get(detail(campaign.pk)).status_code == 404
    assert charlie_client.patch(detail(campaign.pk), {"name": "x"}, format="json").status_code == 404
    assert charlie_client.delete(detail(campaign.pk)).status_code == 404
    assert charlie_client.post(detail(campaign.pk, "cancel/")).status_code == 404
    assert charlie_client.get(detail(campaign.pk, "transitions/")).status_code == 404
    assert charlie_client.get(URL).data["count"] == 0
    campaign.refresh_from_db()
    assert campaign.status == "draft" and campaign.name != "x"


# --- update -----------------------------------------------------------------------------------


def test_it_updates_allowed_fields_partially(alice_client, org):
    campaign = CampaignFactory(organization=org, name="Old", lead_count=5)
    response = alice_client.patch(detail(campaign.pk), {"name": "New"}, format="json")
    assert response.status_code == 200
    campaign.refresh_from_db()
    assert (campaign.name, campaign.lead_count) == ("New", 5)


def test_put_replaces_the_content(alice_client, org):
    campaign = CampaignFactory(organization=org)
    response = alice_client.put(detail(campaign.pk), valid_payload(name="Replaced", lead_count=7), format="json")
    assert response.status_code == 200, response.data
    campaign.refresh_from_db()
    assert (campaign.name, campaign.lead_count) == ("Replaced", 7)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "7d2c4a52-0000-4000-8000-000000000001"),
        ("status", "completed"),
        ("organization", "acme"),
        ("progress", 9),
    ],
)
def test_it_refuses_immutable_fields(alice_client, org, field, value):
    campaign = CampaignFactory(organization=org, name="Same")
    response = alice_client.patch(detail(campaign.pk), {field: value, "name": "Changed"}, format="json")
    assert response.status_code == 400
    assert field in response.data
    campaign.refresh_from_db()
    assert campaign.name == "Same" and campaign.status == "draft"


def test_it_validates_updates_and_writes_nothing(alice_client, org):
    campaign = CampaignFactory(organization=org, lead_count=5)
    response = alice_client.patch(detail(campaign.pk), {"lead_count": -1, "name": "Changed"}, format="json")
    assert response.status_code == 400 and "lead_count" in response.data
    campaign.refresh_from_db()
    assert campaign.lead_count == 5 and campaign.name != "Changed"


def test_content_edits_are_refused_with_409_while_running(alice_client, org):
    campaign = CampaignFactory(organization=org, status="running", name="Running")
    response = alice_client.patch(detail(campaign.pk), {"name": "Changed"}, format="json")
    assert response.status_code == 409
    assert response.data["current_status"] == "running"
    campaign.refresh_from_db()
    assert campaign.name == "Running"


# --- delete -----------------------------------------------------------------------------------


def test_delete_is_soft_and_hides_the_campaign(alice_client, org):
    campaign = CampaignFactory(organization=org)
    assert alice_client.delete(detail(campaign.pk)).status_code == 204
    campaign.refresh_from_db()
    assert campaign.deleted_at is not None
    assert alice_client.get(detail(campaign.pk)).status_code == 404
    assert alice_client.get(URL).data["count"] == 0


@pytest.mark.parametrize("status", ["running", "paused"])
def test_delete_is_refused_while_the_campaign_is_active(alice_client, org, status):
    campaign = CampaignFactory(organization=org, status=status)
    response = alice_client.delete(detail(campaign.pk))
    assert response.status_code == 409
    campaign.refresh_from_db()
    assert campaign.deleted_at is None


# --- transitions ------------------------------------------------------------------------------


def test_transitions_lists_the_allowed_actions_and_their_target_statuses(alice_client, org):
    campaign = CampaignFactory(organization=org, status="paused", pause_kind="manual")
    response = alice_client.get(detail(campaign.pk, "transitions/"))
    assert response.data == {
        "status": "paused",
        "allowed_transitions": ["running", "cancelled"],
        "allowed_actions": [{"action": "resume", "target": "running"}, {"action": "cancel", "target": "cancelled"}],
    }


def test_a_draft_offers_start_schedule_and_cancel_but_not_resume(alice_client, org):
    campaign = CampaignFactory(organization=org)
    data = alice_client.get(detail(campaign.pk)).data
    assert data["allowed_actions"] == ["start", "schedule", "cancel"]


def test_resume_on_a_draft_is_refused_naming_the_status_and_the_allowed_actions(alice_client, org):
    campaign = CampaignFactory(organization=org)
    response = alice_client.post(detail(campaign.pk, "resume/"))
    assert response.status_code == 409
    assert response.data["current_status"] == "draft"
    assert response.data["allowed_actions"] == ["start", "schedule", "cancel"]
    assert "resume is allowed only from paused" in response.data["detail"]
    assert "Allowed from draft: start, schedule, cancel" in response.data["detail"]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("draft", "")
    assert not campaign.jobs.exists()


# Body-less actions (schedule takes a launch time and has its own tests).
ACTIONS = ["start", "unschedule", "pause", "resume", "cancel"]
CASES = [
    (status, name, status in CAMPAIGN_ACTIONS[name].sources) for status in CAMPAIGN_TRANSITIONS for name in ACTIONS
]


@pytest.mark.parametrize(("status", "action", "legal"), CASES)
def test_every_action_starts_only_from_its_own_source_statuses(alice_client, org, status, action, legal):
    campaign = CampaignFactory(organization=org, status=status, pause_kind="manual" if status == "paused" else "")
    response = alice_client.post(detail(campaign.pk, f"{action}/"))
    campaign.refresh_from_db()
    if legal:
        assert response.status_code == 200, response.data
        assert campaign.status == CAMPAIGN_ACTIONS[action].target
        event = CampaignEvent.objects.get(campaign=campaign, action=f"campaign.{campaign.status}")
        assert (event.from_status, event.to_status, event.actor_label) == (status, campaign.status, "alice")
    else:
        assert response.status_code == 409
        assert response.data["current_status"] == status
        assert response.data["allowed_actions"] == [a.name for a in campaign_actions_allowed(status)]
        assert response.data["allowed_transitions"] == list(CAMPAIGN_TRANSITIONS[status])
        assert campaign.status == status


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"search_url": ""}, "a lead source (a search URL or an uploaded CSV)"),
        ({"from_email": ""}, "a sender address (from_email)"),
        ({"subject_template": ""}, "a subject (subject_template)"),
        ({"body_template": "  "}, "a body (body_template)"),
    ],
)
def test_start_refuses_a_campaign_that_cannot_run_naming_what_is_missing(alice_client, org, fields, missing):
    campaign = CampaignFactory(organization=org, **fields)
    response = alice_client.post(detail(campaign.pk, "start/"))
    assert response.status_code == 409
    assert missing in response.data["detail"]
    assert response.data["missing"] == [missing]
    campaign.refresh_from_db()
    assert campaign.status == "draft" and not campaign.jobs.exists()


def test_start_names_everything_missing_at_once(alice_client, org):
    campaign = CampaignFactory(organization=org, search_url="", from_email="", subject_template="", body_template="")
    response = alice_client.post(detail(campaign.pk, "start/"))
    assert response.status_code == 409
    assert len(response.data["missing"]) == 4


def test_an_instantly_campaign_needs_only_a_lead_source_to_start(org):
    # Its sender and its sequence are set up in Instantly.
    campaign = CampaignFactory(
        organization=org, channel="instantly", from_email="", subject_template="", body_template=""
    )
    assert campaign_missing_for_start(campaign=campaign) == []
    campaign.search_url = ""
    assert campaign_missing_for_start(campaign=campaign) == ["a lead source (a search URL or an uploaded CSV)"]


def test_a_campaign_with_an_uploaded_csv_has_a_lead_source(org):
    campaign = CampaignFactory(organization=org, search_url="", file_name="people.csv", total_records=3)
    assert campaign_missing_for_start(campaign=campaign) == []


def test_schedule_refuses_a_campaign_that_could_not_start(alice_client, org):
    campaign = CampaignFactory(organization=org, from_email="")
    response = alice_client.post(
        detail(campaign.pk, "schedule/"), {"scheduled_at": "2999-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 409
    assert "Cannot schedule: the campaign is missing a sender address" in response.data["detail"]


def test_pause_records_a_manual_reason(alice_client, org):
    campaign = CampaignFactory(organization=org, status="running")
    alice_client.post(detail(campaign.pk, "pause/"), {"reason": "checking copy"}, format="json")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "manual")
    assert campaign.paused_at is not None
    assert campaign.events.get(action="campaign.paused").reason == "checking copy"


def test_a_campaign_paused_by_the_system_does_not_resume_on_its_own(alice_client, org):
    campaign = CampaignFactory(organization=org, status="paused", pause_kind="breaker", pause_service="apollo")
    response = alice_client.post(detail(campaign.pk, "resume/"))
    assert response.status_code == 409
    assert "breaker:apollo" in response.data["detail"]
    campaign.refresh_from_db()
    assert campaign.status == "paused"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_starts_of_one_campaign_let_exactly_one_succeed(org, alice):
    campaign = CampaignFactory(organization=org)
    results = []
    barrier = threading.Barrier(2)

    def start():
        client = APIClient()
        client.force_authenticate(alice)
        barrier.wait()
        try:
            results.append(client.post(detail(campaign.pk, "start/")).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]
    assert CampaignEvent.objects.filter(campaign=campaign, action="campaign.running").count() == 1


# --- schema, health ---------------------------------------------------------------------------


def test_the_openapi_schema_and_docs_are_served(alice_client):
    schema = alice_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/campaigns/{id}/start/" in schema.json()["paths"]
    assert alice_client.get("/api/docs/").status_code == 200


def test_the_browsable_api_renders(alice_client, org):
    CampaignFactory(organization=org, name="<b>bold</b>")
    response = alice_client.get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"&lt;b&gt;bold&lt;/b&gt;" in response.content


def test_healthz_reports_database_and_redis(client, db):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_schedule_sets_the_launch_time_and_refuses_a_past_one(alice_client, org):
    campaign = CampaignFactory(organization=org)
    past = alice_client.post(detail(campaign.pk, "schedule/"), {"scheduled_at": "2000-01-01T00:00:00Z"}, format="json")
    assert past.status_code == 400 and "scheduled_at" in past.data
    response = alice_client.post(
        detail(campaign.pk, "schedule/"), {"scheduled_at": "2999-01-01T09:00:00Z"}, format="json"
    )
    assert response.status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"
    assert campaign.scheduled_at.year == 2999


def test_start_is_refused_while_the_queue_is_paused_or_a_breaker_is_open(alice_client, org):
    from queue_control.services import breaker_reset, queue_pause
    from tests.breakers import breaker_trip

    campaign = CampaignFactory(organization=org)
    breaker_trip(service="openai", error="boom")
    response = alice_client.post(detail(campaign.pk, "start/"))
    assert response.status_code == 409
    assert response.data["detail"] == "Cannot start: circuit breaker openai is open"
    breaker_reset(service="openai", actor=None)
    queue_pause(reason="maintenance")
    response = alice_client.post(detail(campaign.pk, "start/"))
    assert response.status_code == 409 and "queue is paused" in response.data["detail"]
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_a_campaign_paused_by_hand_keeps_its_jobs_through_a_queue_pause_and_resume(alice_client, org):
    from campaigns.models import Job
    from queue_control.services import queue_pause, queue_resume
    from tests.factories import JobFactory

    campaign = CampaignFactory(organization=org, status="paused", pause_kind="manual")
    JobFactory.create_batch(3, campaign=campaign, status="pending")
    queue_pause(reason="maintenance")
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}
    queue_resume(actor=None)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "manual")
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}

    assert alice_client.post(detail(campaign.pk, "resume/")).status_code == 200
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}
