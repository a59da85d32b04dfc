"""An operator recovers from a breaker trip on the Queue control page, in a real browser."""

import os

import pytest

from campaigns.models import Campaign, Job
from integrations.errors import ServerError
from queue_control.guard import guarded_call
from queue_control.models import QueueState
from tests.factories import CampaignFactory, JobFactory

# Playwright's sync API runs an event loop in this thread; Django's ORM calls here are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from playwright import sync_api  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_operator_resets_a_tripped_breaker_and_resumes_the_queue(live_server, page, staff, settings, monkeypatch):
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

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.click("text=Queue control")

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
    assert page.locator("#queue-state-value").inner_text() == "active"
    assert "2 running, 0 paused" in page.locator("#queue-counts").inner_text()

    assert QueueState.get().state == "active"
    assert set(Campaign.objects.values_list("status", flat=True)) == {"running"}
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}
    assert sorted(map(str, kicked)) == sorted(str(c.pk) for c in campaigns)
