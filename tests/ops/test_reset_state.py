import io

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from campaigns.models import Campaign, CampaignEvent, Job, Lead, Organization
from campaigns_project.redis import get_redis, rkey
from tests.factories import CampaignFactory, JobFactory, LeadFactory

# TRUNCATE cannot run inside the per-test transaction (deferred FK checks are pending there).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def populated(org, alice):
    campaign = CampaignFactory(organization=org, status="running")
    lead = LeadFactory(campaign=campaign)
    JobFactory(campaign=campaign, range_start=lead.pk, range_end=lead.pk, size=1)
    CampaignEvent.objects.create(campaign=campaign, action="campaign.running")
    get_redis().set(rkey("breaker", "apollo", "state"), "open")
    get_redis().set("someone-else:key", "kept")
    yield campaign
    get_redis().delete("someone-else:key")


def test_it_empties_the_app_data_and_keys_but_keeps_users_and_beat_schedules(populated, alice):
    beat_tasks = PeriodicTask.objects.count()
    out = call_command("reset_state", "--yes", stdout=io.StringIO())
    assert Campaign.objects.count() == Lead.objects.count() == Job.objects.count() == 0
    assert CampaignEvent.objects.count() == Organization.objects.count() == 0
    assert get_user_model().objects.filter(username="alice").exists()
    assert PeriodicTask.objects.count() == beat_tasks
    assert list(get_redis().scan_iter(match=settings.REDIS_KEY_PREFIX + "*")) == []
    assert get_redis().get("someone-else:key") == "kept"
    assert "campaigns_campaign: 1" in out and "campaigns_lead: 1" in out and "campaigns_job: 1" in out


def test_it_leaves_the_queue_active_and_every_breaker_closed(populated):
    from queue_control.selectors import open_breakers, queue_is_active

    call_command("reset_state", "--yes", stdout=io.StringIO())
    assert queue_is_active()
    assert open_breakers() == []


def test_all_also_removes_users(populated):
    call_command("reset_state", "--yes", "--all", stdout=io.StringIO())
    assert get_user_model().objects.count() == 0


def test_it_refuses_when_debug_is_off_unless_forced(populated, settings):
    settings.DEBUG = False
    settings.TESTING = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("reset_state", "--yes")
    assert Campaign.objects.count() == 1
    call_command("reset_state", "--yes", "--force", stdout=io.StringIO())
    assert Campaign.objects.count() == 0


def test_it_asks_for_confirmation(populated, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    with pytest.raises(CommandError, match="not confirmed"):
        call_command("reset_state")
    assert Campaign.objects.count() == 1
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    call_command("reset_state", stdout=io.StringIO())
    assert Campaign.objects.count() == 0
