"""An operator recovers from a breaker trip on the Queue control page, in a real browser."""

import pytest

from campaigns.models import Campaign, Job
from integrations.errors import ServerError
from queue_control.guard import guarded_call
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory

from .conftest import admin_login


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_operator_resets_a_tripped_breaker_and_resumes_the_queue(
    live_server, page, staff, settings, monkeypatch, screenshot
):
    kicked = []
    monkeypatch.setattr("campaigns.pausing.campaigns_kick", kicked.extend)  # no Celery in this test
    settings.BREAKERS = {**settings.BREAKERS, "apollo": {"threshold": 1, "window": 60}}
    campaigns = [CampaignFactory(status="running", name=f"Spring <b>{n}</b>") for n in range(2)]
    for campaign in campaigns:
        JobFactory.create_batch(2, campaign=campaign, status="pending")

    def apollo_down():
        raise ServerError("apollo", "502 Bad Gateway", 502)

    with pytest.raises(ServerError):
        guarded_call("apollo", apollo_down)
    assert set(Campaign.objects.values_list("status", flat=True)) == {"paused"}

    admin_login(page, live_server)
    page.click("#queue-control-link >> text=Queue control")
    screenshot(page, "tripped")

    assert page.locator("#queue-state-value").inner_text() == "paused"
    assert page.locator("#queue-reason").inner_text() == "breaker:apollo"
    assert page.locator("#breaker-apollo").get_attribute("data-state") == "open"
    assert "502 Bad Gateway" in page.locator("#breaker-apollo").inner_text()
    assert page.locator("#queue-resume").is_disabled()
    assert "apollo" in page.locator("#resume-blocked").inner_text()

    page.click("#reset-apollo")
    assert "Circuit breaker apollo reset to closed" in page.locator(".messagelist").inner_text()
    assert page.locator("#breaker-apollo").get_attribute("data-state") == "closed"
    assert page.locator("#queue-state-value").inner_text() == "paused"  # the reset resumed nothing
    assert page.locator("#queue-resume").is_enabled()

    page.click("#queue-resume")
    assert "Queue resumed" in page.locator(".messagelist").inner_text()
    screenshot(page, "resumed")
    assert page.locator("#queue-state-value").inner_text() == "active"
    assert "2 running, 0 paused" in page.locator("#queue-counts").inner_text()

    assert QueueState.get().state == "active"
    assert set(Campaign.objects.values_list("status", flat=True)) == {"running"}
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}
    assert sorted(map(str, kicked)) == sorted(str(c.pk) for c in campaigns)
