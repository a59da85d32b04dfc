"""campaign.progress: the payload's figures, the same message by GET, coalescing (a thousand
outcomes, one message per tick), rate and ETA, and the API's isolation."""

import pytest
from django.db import transaction

from campaigns.models import CampaignPhase
from campaigns.pipeline import phase_items_add
from tracking.counters import counters_add
from tracking.live import campaign_group, live_publish, organization_group

from .conftest import Listener, dirty_ids


def test_the_progress_of_a_campaign_is_readable_by_get_in_the_sockets_format(alice_client, running_campaign):
    answer = alice_client.get(f"/api/v1/campaigns/{running_campaign.pk}/progress")
    assert answer.status_code == 200
    message = answer.json()
    assert message["type"] == "campaign.progress" and message["version"] == 1
    data = message["data"]
    assert data["status"] == "running" and data["phase"] == "verification"
    assert data["phase_progress"] == 25
    assert data["progress"] == 31  # lead sourcing done (25) + a quarter of verification (6.25)
    assert data["counts"] == {
        "leads": 100,
        "verified": 20,
        "enriched": 0,
        "sent": 0,
        "recipients": {"total": 0, "sent": 0, "failed": 0, "pending": 0},
    }
    assert data["eta_seconds"] is None and data["send_rate_per_minute"] == 0


def test_another_organizations_campaign_progress_is_a_404(charlie_client, anon_client, running_campaign):
    assert charlie_client.get(f"/api/v1/campaigns/{running_campaign.pk}/progress").status_code == 404
    assert charlie_client.get("/api/v1/campaigns/not-a-uuid/progress").status_code == 404
    assert anon_client.get(f"/api/v1/campaigns/{running_campaign.pk}/progress").status_code == 401


def test_recipient_counts_come_from_the_counters_and_the_outreach_phase(alice_client, running_campaign):
    now = running_campaign.created_at
    CampaignPhase.objects.create(
        campaign=running_campaign, phase="outreach", jobs_total=2, items_total=10, items_done=6, items_passed=6,
        items_failed=1, started_at=now, updated_at=now,
    )  # fmt: skip
    counters_add(campaign_id=running_campaign.pk, metrics={"recipients.sent": 6, "recipients.bounced": 1})
    data = alice_client.get(f"/api/v1/campaigns/{running_campaign.pk}/progress").json()["data"]
    assert data["counts"]["recipients"] == {"total": 10, "sent": 6, "failed": 1, "pending": 3}
    assert data["counts"]["sent"] == 6


@pytest.mark.django_db(transaction=True)
def test_a_thousand_batch_outcomes_are_one_message_per_tick(running_campaign):
    listener = Listener(campaign_group(running_campaign.pk))
    for _ in range(1000):
        with transaction.atomic():
            phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=0, failed=0, passed=0)
            phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=1)
    assert dirty_ids() == {str(running_campaign.pk)}

    assert live_publish()["campaigns"] == 1
    [message] = listener.messages()
    assert message["data"]["counts"]["verified"] == 20 and message["data"]["phase_progress"] == 100
    assert live_publish()["campaigns"] == 0  # nothing changed since: nothing sent
    assert listener.messages() == []
    assert dirty_ids() == set()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_marks_nothing(running_campaign):
    with pytest.raises(RuntimeError), transaction.atomic():
        phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=1)
        raise RuntimeError
    assert dirty_ids() == set()


@pytest.mark.django_db(transaction=True)
def test_the_rate_and_the_eta_are_measured_over_the_window(running_campaign, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr("tracking.live._now", lambda: clock[0])
    listener = Listener(organization_group(running_campaign.organization_id))

    phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=0, passed=0, failed=1)
    live_publish()
    clock[0] += 10
    phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=20)  # 2 leads a second
    live_publish()
    first, data = (message["data"] for message in listener.messages())
    assert first["phase_rate_per_second"] == 0.0  # one sample: no rate yet
    assert data["phase_rate_per_second"] == 2.0
    assert data["eta_seconds"] == 27  # 54 leads left at 2 a second
