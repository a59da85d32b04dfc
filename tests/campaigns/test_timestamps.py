"""Status timestamps come from the transitions' one table, for one campaign's move and for the
queue cascade's set-based UPDATEs alike; started_at is the first start, and every resume is a
history row instead."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import CampaignEvent
from queue_control.services import queue_pause, queue_resume
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_a_manual_resume_keeps_the_first_start_and_is_in_the_history(org, alice):
    first = timezone.now() - timedelta(hours=3)
    campaign = CampaignFactory(organization=org, status="running", started_at=first)

    services.campaign_pause(campaign_id=campaign.pk, actor=alice, reason="lunch")
    campaign.refresh_from_db()
    assert campaign.paused_at is not None and campaign.paused_at > first
    services.campaign_resume(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()

    assert (campaign.status, campaign.started_at) == ("running", first)
    resumed = CampaignEvent.objects.get(campaign=campaign, from_status="paused", to_status="running")
    assert resumed.actor == alice


def test_the_queue_cascade_sets_paused_at_and_keeps_started_at(org):
    first = timezone.now() - timedelta(hours=3)
    campaign = CampaignFactory(organization=org, status="running", started_at=first, paused_at=None)

    before = timezone.now()
    queue_pause(reason="maintenance")
    campaign.refresh_from_db()
    assert campaign.status == "paused" and campaign.paused_at >= before
    queue_resume(actor=None)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.started_at) == ("running", first)


def test_a_first_start_sets_started_at(org, alice):
    campaign = CampaignFactory(organization=org, status="paused", pause_kind="queue", started_at=None)
    queue_resume(actor=None)
    campaign.refresh_from_db()
    assert campaign.status == "running" and campaign.started_at is not None
