"""Live operations' fixtures: the real Redis channel layer (its keys under the test prefix),
campaigns with phase rows, and a publisher tick run here as beat would run it."""

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from campaigns.models import CampaignPhase
from campaigns_project.live import dirty_campaigns_key
from campaigns_project.redis import get_redis
from queue_control.models import QueueState
from tests.factories import CampaignFactory


@pytest.fixture(autouse=True)
def queue_active(db):
    QueueState.objects.update_or_create(pk=1, defaults={"state": QueueState.State.ACTIVE, "reason": ""})


@pytest.fixture
def running_campaign(org):
    campaign = CampaignFactory(organization=org, name="Spring outreach", status="running", phase="verification")
    now = timezone.now()
    CampaignPhase.objects.create(
        campaign=campaign, phase="lead_sourcing", jobs_total=1, jobs_finished=1, items_total=100,
        items_done=100, items_passed=100, started_at=now, finished_at=now, updated_at=now,
    )  # fmt: skip
    CampaignPhase.objects.create(
        campaign=campaign, phase="verification", jobs_total=4, jobs_finished=1, items_total=100,
        items_done=25, items_passed=20, started_at=now, updated_at=now,
    )  # fmt: skip
    return campaign


def dirty_ids() -> set[str]:
    return set(get_redis().smembers(dirty_campaigns_key()))


class Listener:
    """A channel of the real Redis layer joined to groups. A plain channel name, not one from
    new_channel(): channels_redis buffers a process's "specific!" channels per event loop, and
    each async_to_sync call here runs in a loop of its own."""

    def __init__(self, *groups: str) -> None:
        self.layer = get_channel_layer()
        self.channel = f"test-listener-{uuid.uuid4().hex}"
        for group in groups:
            async_to_sync(self.layer.group_add)(group, self.channel)

    def messages(self, timeout: float = 0.5) -> list[dict]:
        async def drain():
            found = []
            while True:
                try:
                    found.append((await asyncio.wait_for(self.layer.receive(self.channel), timeout))["message"])
                except TimeoutError:
                    return found

        return async_to_sync(drain)()
