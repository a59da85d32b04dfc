"""Every admin page tells an operator, at a glance, that work is stopped (queue paused, breaker
not closed) or about to stop again (a sandbox set to fail every call)."""

import pytest

from integrations.models import SandboxSetting
from queue_control.services import queue_pause
from tests.breakers import breaker_trip

pytestmark = pytest.mark.django_db

PAGES = ["/admin/", "/admin/campaigns/campaign/", "/admin/campaigns/job/", "/admin/queue-control/"]


def page(client, url="/admin/campaigns/campaign/") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_no_banner_while_the_queue_runs_and_every_breaker_is_closed(admin_client_logged_in):
    SandboxSetting.objects.update(fail=False)
    html = page(admin_client_logged_in)
    assert 'id="operations-banner"' not in html and 'id="sandbox-warning"' not in html


@pytest.mark.parametrize("url", PAGES)
def test_a_paused_queue_is_announced_on_every_admin_page_with_a_link(admin_client_logged_in, url):
    queue_pause(reason="provider maintenance")
    html = page(admin_client_logged_in, url)
    assert 'id="operations-banner"' in html
    assert "The queue is paused</strong> (provider maintenance)" in html
    assert '<a href="/admin/queue-control/" id="operations-banner-link">Queue control</a>' in html


def test_an_open_breaker_is_named(admin_client_logged_in):
    breaker_trip(service="apollo", error="502")
    html = page(admin_client_logged_in)
    assert "<strong>apollo</strong> (open)" in html
    assert "The queue is paused</strong> (breaker:apollo)" in html


def test_a_sandbox_switch_set_to_fail_is_a_warning(admin_client_logged_in):
    SandboxSetting.objects.filter(service="openai").update(fail=True)
    html = page(admin_client_logged_in)
    assert 'id="sandbox-warning"' in html
    assert "every call to the sandbox of\n  <strong>openai</strong>" in html
    assert "a queue resume now trips its breaker again" in html


def test_sandbox_fail_in_the_environment_is_a_warning_too(admin_client_logged_in, settings):
    SandboxSetting.objects.update(fail=False)
    settings.SANDBOX_FAIL = ["smtp"]
    html = page(admin_client_logged_in)
    assert "<strong>smtp</strong> (SANDBOX_FAIL in the environment)" in html


def test_the_login_page_tells_nothing_to_anonymous_visitors(client):
    queue_pause(reason="secret maintenance")
    html = client.get("/admin/login/").content.decode()
    assert "secret maintenance" not in html and "operations-banner" not in html


def test_view_site_leads_to_the_api_and_the_root_to_the_admin(admin_client_logged_in):
    html = page(admin_client_logged_in, "/admin/")
    assert '<a href="/api/v1/">View site</a>' in html
    response = admin_client_logged_in.get("/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")
