"""The operator console's live dashboard in headless Chromium, served by uvicorn (HTTP and the
WebSocket, as `make run` serves them): a campaign moves through its phases, pauses when a
breaker trips, resumes after the reset and the queue resume, and completes, while the page,
never reloaded, follows it; then the charts show its engagement. Screenshots at each step."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from campaigns import services as campaign_services
from campaigns.models import Campaign
from campaigns.runner import job_work
from campaigns.states import QUEUE_JOB_TYPES
from queue_control import services as queue_services
from queue_control.models import QueueState
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory
from tracking import live
from tracking.models import Recipient
from tracking.services import event_record

from .conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SEARCH_URL = "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Germany"


class Server:
    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture
def no_celery(monkeypatch):
    """Wake-ups are recorded, not sent: this test runs the jobs itself, step by step."""
    monkeypatch.setattr("campaigns.dispatch._send", lambda task, args, **kwargs: None)


def live_publish() -> None:
    """One tick of the publisher, in a thread of its own: Playwright's sync API keeps an event
    loop running in this one, where async_to_sync refuses to run."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(live.live_publish).result()


def work(campaign, rounds: int = 1) -> None:
    for _ in range(rounds):
        for kind in QUEUE_JOB_TYPES:
            job_work(campaign_id=campaign.pk, kind=kind)


def row_state(page, campaign) -> tuple[str, str]:
    row = page.locator(f"#campaign-{campaign.pk}")
    return row.get_attribute("data-status"), row.get_attribute("data-phase")


def wait_for_row(page, campaign, *, status: str, phase: str | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live_publish()  # what beat does every second
        if row_state(page, campaign)[0] == status and (phase is None or row_state(page, campaign)[1] == phase):
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"the row shows {row_state(page, campaign)}, not {status}/{phase}")


def test_the_dashboard_follows_a_campaign_through_its_phases_a_pause_and_a_resume_without_reloading(
    asgi_server, page, staff, org, no_celery, screenshot, settings
):
    settings.ENGINE_BATCH_SIZE = 5
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    QueueState.objects.update_or_create(pk=1, defaults={"state": "active", "reason": ""})
    campaign = CampaignFactory(
        organization=org, name="Spring outreach", search_url=SEARCH_URL, lead_count=20, send_rate_per_minute=60_000
    )
    campaign_services.campaign_start(campaign_id=campaign.pk, actor=staff)

    admin_login(page, Server(asgi_server))
    page.goto(f"{asgi_server}/admin/live/")
    page.wait_for_selector("#live-connection[data-mode=live]", timeout=10_000)
    page.evaluate("window.__notReloaded = true")
    assert row_state(page, campaign) == ("running", "lead_sourcing")
    assert page.locator("#live-queue-state").inner_text() == "queue active"
    screenshot(page, "1-lead-sourcing")

    work(campaign)  # the lead search: 20 leads, then verification fans out
    wait_for_row(page, campaign, status="running", phase="verification")
    assert page.locator(f"#campaign-{campaign.pk} .live-counts").inner_text().startswith("20 → ")
    screenshot(page, "2-verification")

    breaker_trip(service="millionverifier", error="credits exhausted (injected)")
    wait_for_row(page, campaign, status="paused")
    assert "breaker:millionverifier" in page.locator(f"#campaign-{campaign.pk} .live-cause").inner_text()
    page.wait_for_selector("#live-queue[data-state=paused]")
    assert page.locator("#breaker-millionverifier").get_attribute("data-state") == "open"
    screenshot(page, "3-paused-by-the-breaker")

    queue_services.breaker_reset(service="millionverifier", actor=staff)
    queue_services.queue_resume(actor=staff)
    wait_for_row(page, campaign, status="running")
    page.wait_for_selector("#live-queue[data-state=active]")
    assert page.locator("#breaker-millionverifier").get_attribute("data-state") == "closed"
    screenshot(page, "4-resumed")

    for _ in range(60):  # verification, enrichment, outreach: until the campaign is done
        work(campaign)
        live_publish()
        if Campaign.objects.get(pk=campaign.pk).status == "completed":
            break
    wait_for_row(page, campaign, status="completed", phase="done")
    sent = page.locator(f"#campaign-{campaign.pk} .live-sent").inner_text()
    recipients = Recipient.objects.filter(campaign=campaign).count()
    assert recipients > 0 and sent == f"{recipients} of {recipients}"
    screenshot(page, "5-completed")

    for recipient in Recipient.objects.filter(campaign=campaign)[:6]:
        event_record(type="open", recipient_id=recipient.pk)
        event_record(type="open", recipient_id=recipient.pk, is_machine=True)
    event_record(type="click", recipient_id=recipient.pk)
    event_record(type="reply", recipient_id=recipient.pk, source="generic")
    page.select_option("#chart-campaign", str(campaign.pk))
    page.wait_for_function("document.getElementById('chart-opens').dataset.human === '6'", timeout=10_000)
    screenshot(page, "6-charts")
    assert page.evaluate("window.__notReloaded") is True  # every update above came without a reload


def test_the_dashboard_polls_when_the_websocket_cannot_be_opened(asgi_server, page, staff, org, screenshot, settings):
    settings.LIVE_WEBSOCKET_URL = "ws://127.0.0.1:9/nowhere/"  # nothing listens there
    campaign = CampaignFactory(organization=org, name="Polled", status="running", phase="lead_sourcing")
    admin_login(page, Server(asgi_server))
    page.goto(f"{asgi_server}/admin/live/")
    page.wait_for_selector("#live-connection[data-mode=polling]", timeout=10_000)
    Campaign.objects.filter(pk=campaign.pk).update(status="paused", pause_kind="manual")
    page.wait_for_selector(f"#campaign-{campaign.pk}[data-status=paused]", timeout=10_000)
    screenshot(page, "polling")
