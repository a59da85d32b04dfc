"""The Swagger UI at /api/docs/ works with no network but this server's: its scripts and styles
are the project's own static files (drf-spectacular-sidecar), not a CDN's."""

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_load_offline_and_show_the_operations(live_server, page, screenshot):
    outside = []

    def only_this_server(route):
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:  # what an offline machine would get
            outside.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", only_this_server)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=20_000)
    screenshot(page, "swagger")

    assert outside == []
    assert page.locator(".opblock").count() > 30
    summaries = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/queue-management/status" in [s.replace("\u200b", "") for s in summaries]
    assert page.locator(".info .title").inner_text().startswith("Campaign back-office API")
