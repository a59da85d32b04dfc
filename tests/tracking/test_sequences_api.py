"""The sequence API: Alice (owner) and Bob (operator) edit steps, variants and the window; Victor
(viewer) only reads; Charlie (another organization) sees nothing. Bad input is a 400 naming the
field, with nothing written."""

import pytest

from campaigns.models import CampaignEvent
from tests.factories import CampaignFactory
from tracking.models import Recipient, SequenceSettings, SequenceStep, StepVariant

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(org):
    """Alice's draft campaign: a sequence is edited while draft, scheduled or paused."""
    return CampaignFactory(organization=org, name="Draft outreach", status="draft", channel="smtp")


@pytest.fixture
def running(org):
    return CampaignFactory(organization=org, name="Running outreach", status="running", phase="outreach")


def url(campaign, resource: str) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/{resource}/"


def test_an_operator_adds_steps_at_the_end_and_the_history_says_so(bob_client, campaign):
    first = bob_client.post(url(campaign, "steps"), {"delay_days": 2, "body_template": "Hi {{ first_name }}"})
    second = bob_client.post(
        url(campaign, "steps"),
        {"delay_days": 3, "business_days": True, "subject_template": "Last try", "body_template": "Bye"},
        format="json",
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert (first.json()["number"], second.json()["number"]) == (2, 3)
    listed = bob_client.get(url(campaign, "steps")).json()
    assert [(s["number"], s["same_thread"], s["business_days"]) for s in listed] == [(2, True, False), (3, True, True)]
    assert CampaignEvent.objects.filter(campaign=campaign, action="sequence.step_added").count() == 2


def test_a_template_that_cannot_render_is_refused_naming_the_field(alice_client, campaign):
    response = alice_client.post(url(campaign, "steps"), {"body_template": "Hi {{ nickname }}"})
    assert response.status_code == 400
    assert "body_template" in response.json() and "nickname" in str(response.json())
    assert not SequenceStep.objects.exists()
    no_subject = alice_client.post(url(campaign, "steps"), {"body_template": "Hi", "same_thread": False})
    assert no_subject.status_code == 400 and "subject_template" in no_subject.json()


def test_deleting_a_step_moves_the_later_ones_up(alice_client, campaign):
    for body in ("two", "three", "four"):
        alice_client.post(url(campaign, "steps"), {"body_template": body})
    StepVariant.objects.create(campaign=campaign, step=4, label="A", body_template="four A")
    two = SequenceStep.objects.get(campaign=campaign, number=2)
    assert alice_client.delete(f"{url(campaign, 'steps')}{two.pk}/").status_code == 204
    assert list(SequenceStep.objects.values_list("number", "body_template")) == [(2, "three"), (3, "four")]
    assert list(StepVariant.objects.values_list("step", "label")) == [(3, "A")]


def test_variants_need_an_existing_step(alice_client, campaign):
    refused = alice_client.post(url(campaign, "variants"), {"step": 2, "label": "A", "body_template": "x"})
    assert refused.status_code == 400 and "step" in refused.json()
    created = alice_client.post(url(campaign, "variants"), {"step": 1, "label": "B", "body_template": "Hey"})
    assert created.status_code == 201 and created.json()["weight"] == 50
    assert [v["label"] for v in alice_client.get(url(campaign, "variants") + "?step=1").json()] == ["B"]
    assert alice_client.get(url(campaign, "variants") + "?step=2").json() == []


def test_the_window_and_stop_rules_are_validated_and_kept(alice_client, campaign):
    assert alice_client.get(url(campaign, "sequence-settings")).json()["window_enabled"] is False
    bad = alice_client.patch(
        url(campaign, "sequence-settings"),
        {"timezone": "Mars/Olympus", "start_time": "18:00", "end_time": "09:00"},
        format="json",
    )
    assert bad.status_code == 400 and {"timezone", "end_time"} <= set(bad.json())
    assert not SequenceSettings.objects.exists()
    good = alice_client.patch(
        url(campaign, "sequence-settings"),
        {
            "window_enabled": True,
            "timezone": "Europe/Berlin",
            "days": [0, 1, 2, 3],
            "holidays": ["2026-12-24"],
            "stop_on_click": True,
            "stop_company_on_reply": True,
        },
        format="json",
    )
    assert good.status_code == 200, good.json()
    rules = SequenceSettings.objects.get(campaign=campaign)
    assert (rules.timezone, rules.days, rules.holidays, rules.stop_on_click) == (
        "Europe/Berlin",
        [0, 1, 2, 3],
        ["2026-12-24"],
        True,
    )
    shown = alice_client.get(url(campaign, "sequence-settings")).json()
    assert (shown["holidays"], shown["start_time"], shown["end_time"]) == (["2026-12-24"], "09:00", "17:00")
    hours = alice_client.patch(url(campaign, "sequence-settings"), {"start_time": "08:30"}, format="json")
    assert hours.status_code == 200 and hours.json()["start_time"] == "08:30"
    assert (
        alice_client.patch(url(campaign, "sequence-settings"), {"end_time": "25:00"}, format="json").status_code == 400
    )
    assert alice_client.options(url(campaign, "sequence-settings")).status_code == 200
    unknown = alice_client.patch(url(campaign, "sequence-settings"), {"stop_on_open": True}, format="json")
    assert unknown.status_code == 400 and "stop_on_open" in unknown.json()


def test_viewers_read_and_cannot_write(viewer_client, campaign):
    assert viewer_client.get(url(campaign, "steps")).status_code == 200
    assert viewer_client.post(url(campaign, "steps"), {"body_template": "x"}).status_code == 403
    assert viewer_client.patch(url(campaign, "sequence-settings"), {}, format="json").status_code == 403
    assert not SequenceStep.objects.exists()


def test_another_organization_sees_nothing(charlie_client, campaign):
    for resource in ("steps", "variants", "sequence-settings", "variant-stats"):
        assert charlie_client.get(url(campaign, resource)).status_code == 404, resource
    assert charlie_client.post(url(campaign, "steps"), {"body_template": "x"}).status_code == 404


def test_the_timeline_and_the_variant_stats_answer(alice_client, campaign, other_campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="tim@example.org")
    stranger = Recipient.objects.create(campaign=other_campaign, email="tim@example.org")
    timeline = alice_client.get(f"{url(campaign, 'timelines')}{recipient.pk}/")
    assert timeline.status_code == 200
    assert timeline.json()["entries"] == [] and timeline.json()["steps_total"] == 1
    assert alice_client.get(f"{url(campaign, 'timelines')}{stranger.pk}/").status_code == 404
    stats = alice_client.get(url(campaign, "variant-stats"))
    assert stats.status_code == 200 and stats.json() == {"metric": "open", "steps": []}


def test_a_running_campaigns_sequence_is_refused_with_409_until_paused(alice_client, running):
    for resource, body in (
        ("steps", {"body_template": "x"}),
        ("variants", {"step": 1, "label": "A", "body_template": "x"}),
        ("sequence-settings", {"stop_on_click": True}),
    ):
        send = alice_client.patch if resource == "sequence-settings" else alice_client.post
        response = send(url(running, resource), body, format="json")
        assert response.status_code == 409, (resource, response.json())
        assert "running campaign" in str(response.json())
    assert not SequenceStep.objects.exists() and not SequenceSettings.objects.exists()
    assert alice_client.get(url(running, "steps")).status_code == 200
