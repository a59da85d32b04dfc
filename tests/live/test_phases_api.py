"""GET …/phases and PUT …/transition: the phase view from the seeds, and a transition by target
mapped onto the action table, refused with 409 and the allowed ones as the actions are."""

from datetime import timedelta

from django.utils import timezone

from campaigns.models import Campaign, CampaignEvent
from tests.factories import CampaignFactory


def test_the_phase_view_shows_every_phase_with_progress_counts_timings_and_the_transitions(
    alice_client, running_campaign
):
    answer = alice_client.get(f"/api/v1/campaigns/{running_campaign.pk}/phases")
    assert answer.status_code == 200
    view = answer.json()
    assert (view["status"], view["current_phase"], view["phase_status"]) == ("running", "verification", "running")
    assert [p["phase"] for p in view["phases"]] == ["lead_sourcing", "verification", "enrichment", "outreach"]
    sourcing, verification, enrichment, _ = view["phases"]
    assert sourcing["status"] == "completed" and sourcing["progress"] == 100 and sourcing["items_passed"] == 100
    assert sourcing["duration_seconds"] is not None
    assert verification["status"] == "running" and verification["progress"] == 25
    assert (verification["jobs_total"], verification["jobs_finished"], verification["items_done"]) == (4, 1, 25)
    assert enrichment == {
        **enrichment,
        "status": "pending",
        "progress": 0,
        "started_at": None,
        "duration_seconds": None,
    }
    assert view["available_transitions"] == [
        {"target": "paused", "action": "pause"},
        {"target": "cancelled", "action": "cancel"},
    ]


def test_a_draft_has_not_started(alice_client, org):
    draft = CampaignFactory(organization=org)
    view = alice_client.get(f"/api/v1/campaigns/{draft.pk}/phases").json()
    assert (view["current_phase"], view["phase_status"]) == (None, "not_started")
    assert {t["action"] for t in view["available_transitions"]} == {"start", "schedule", "cancel"}


def test_a_transition_to_paused_pauses_by_hand_with_the_reason_in_the_history(bob_client, running_campaign):
    answer = bob_client.put(
        f"/api/v1/campaigns/{running_campaign.pk}/transition",
        {"target": "paused", "reason": "client asked"},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert (answer.json()["status"], answer.json()["pause_reason"]) == ("paused", "manual")
    event = CampaignEvent.objects.filter(campaign=running_campaign, action="campaign.paused").get()
    assert event.reason == "client asked" and event.actor_label == "bob"

    resumed = bob_client.put(
        f"/api/v1/campaigns/{running_campaign.pk}/transition", {"target": "running", "reason": "ok now"}, format="json"
    )
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"  # the resume action, not start
    assert CampaignEvent.objects.filter(campaign=running_campaign, action="campaign.running").get().reason == "ok now"


def test_a_transition_no_action_leads_to_is_refused_with_409_and_the_allowed_ones(bob_client, running_campaign):
    answer = bob_client.put(f"/api/v1/campaigns/{running_campaign.pk}/transition", {"target": "draft"}, format="json")
    assert answer.status_code == 409
    body = answer.json()
    assert body["current_status"] == "running"
    assert body["allowed_actions"] == ["pause", "cancel"]
    assert body["available_transitions"] == [
        {"target": "paused", "action": "pause"},
        {"target": "cancelled", "action": "cancel"},
    ]
    assert Campaign.objects.get(pk=running_campaign.pk).status == "running"


def test_a_service_refusal_is_a_409_too(bob_client, running_campaign):
    paused = {"status": "paused", "pause_kind": "breaker", "pause_service": "apollo"}
    Campaign.objects.filter(pk=running_campaign.pk).update(**paused)
    answer = bob_client.put(f"/api/v1/campaigns/{running_campaign.pk}/transition", {"target": "running"}, format="json")
    assert answer.status_code == 409
    assert "resumes with the queue" in answer.json()["detail"]


def test_scheduling_needs_a_time_and_bad_bodies_are_400s(bob_client, org):
    draft = CampaignFactory(organization=org)
    url = f"/api/v1/campaigns/{draft.pk}/transition"
    assert bob_client.put(url, {"target": "scheduled"}, format="json").status_code == 400
    assert bob_client.put(url, {"target": "nowhere"}, format="json").status_code == 400
    assert bob_client.put(url, {"target": "paused", "extra": 1}, format="json").status_code == 400
    later = (timezone.now() + timedelta(hours=1)).isoformat()
    answer = bob_client.put(url, {"target": "scheduled", "scheduled_at": later}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "scheduled"


def test_viewers_and_other_organizations_cannot_transition(viewer_client, charlie_client, running_campaign):
    url = f"/api/v1/campaigns/{running_campaign.pk}/transition"
    assert viewer_client.put(url, {"target": "paused"}, format="json").status_code == 403
    assert charlie_client.put(url, {"target": "paused"}, format="json").status_code == 404
    assert charlie_client.get(f"/api/v1/campaigns/{running_campaign.pk}/phases").status_code == 404
