"""The browsable API's front page lists every resource of the API, not only the campaigns."""

import re
from urllib.parse import urlparse

import pytest


def urls_in(data) -> list[str]:
    if isinstance(data, dict):
        return [url for value in data.values() for url in urls_in(value)]
    return [data]


@pytest.fixture
def root(alice_client):
    response = alice_client.get("/api/v1/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def test_the_root_lists_queue_management_tracking_and_webhooks_besides_campaigns(root):
    assert root["campaigns"] == "http://testserver/api/v1/campaigns/"
    assert root["queue-management/status"] == "http://testserver/api/v1/queue-management/status"
    assert root["queue-management/circuit-breakers/{service}/reset"].endswith("circuit-breakers/{service}/reset")
    assert root["campaign"]["stats"] == "http://testserver/api/v1/campaigns/{id}/stats"
    assert root["recipient"]["events"] == "http://testserver/api/v1/campaigns/tracking/{recipient_id}/events"
    assert root["webhooks/instantly"] == "http://testserver/api/v1/webhooks/instantly"
    assert root["docs"] == "http://testserver/api/docs/"


def test_every_path_of_the_schema_is_on_the_root(root, alice_client):
    listed = [urlparse(url).path.rstrip("/") for url in urls_in(root)]
    schema = alice_client.get("/api/schema/?format=json").json()
    for path in schema["paths"]:
        pattern = re.escape(path.rstrip("/")).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{[a-z_]+\}", r"[^/]+", pattern)
        assert any(re.fullmatch(pattern, url) for url in listed), f"{path} is not on the API root"


def test_the_browsable_root_renders_as_html(alice_client):
    response = alice_client.get("/api/v1/", HTTP_ACCEPT="text/html")
    html = response.content.decode()
    assert response.status_code == 200
    assert "queue-management/status" in html and "webhooks/generic" in html
