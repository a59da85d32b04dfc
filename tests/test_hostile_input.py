"""Values PostgreSQL or Python cannot take are a 400 naming the field, never a 500, and nothing is
written; every error under /api/ is JSON (issue 11, points 2, 6 and 7)."""

import json

import pytest
from django.db import connection

from campaigns.models import Campaign, CampaignEvent
from queue_control.models import QueueState
from tests.factories import CampaignFactory
from tracking.models import Recipient

pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns/"


def post_raw(client, url: str, raw: str | bytes, method: str = "post"):
    body = raw.encode() if isinstance(raw, str) else raw
    return getattr(client, method)(url, body, content_type="application/json")


def campaign_body(**overrides) -> dict:
    return {"name": "Q4", "search_url": "https://app.apollo.io/#/people?personTitles[]=cto", **overrides}


# --- NUL characters ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "description", "organization", "from_name", "subject_template"])
def test_a_nul_in_any_json_string_is_a_400_naming_the_field(alice_client, field):
    response = alice_client.post(URL, campaign_body(**{field: "bad\u0000value"}), format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Campaign.objects.exists()


def test_a_nul_in_a_key_or_a_nested_value_is_a_400(alice_client):
    response = post_raw(alice_client, URL, '{"name": "x", "nested": {"a": ["ok", "n\\u0000l"]}}')
    assert response.status_code == 400 and "nested.a[1]" in response.json()
    response = post_raw(alice_client, URL, '{"na\\u0000me": "x"}')
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        URL + "?search=%00",
        URL + "?status=%00",
        URL + "?ordering=%00name",
        URL + "?created_after=2020%00",
        URL + "?page=%00",
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(alice_client, url):
    response = alice_client.get(url)
    assert response.status_code == 400
    name = url.split("?")[1].split("=")[0]
    assert name in response.json()


def test_a_nul_in_the_search_of_every_campaign_scoped_list_is_a_400(alice_client, org):
    campaign = CampaignFactory(organization=org)
    for suffix in ("recipients/", "results/", "jobs/", "history/"):
        response = alice_client.get(f"{URL}{campaign.pk}/{suffix}?search=a%00b")
        assert response.status_code == 400, suffix
        assert response["Content-Type"] == "application/json"


def test_a_nul_in_a_path_is_a_404_like_any_malformed_id(alice_client):
    response = alice_client.get(URL + "%00/stats/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_a_nul_in_an_action_reason_is_a_400_and_nothing_changes(alice_client, org):
    campaign = CampaignFactory(organization=org, status="running", phase="verification")
    response = alice_client.post(f"{URL}{campaign.pk}/pause/", {"reason": "x\u0000"}, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    campaign.refresh_from_db()
    assert campaign.status == "running"


def test_a_nul_in_the_admin_search_is_a_400_not_a_500(admin_client_logged_in):
    for url in ("/admin/campaigns/campaign/?q=%00", "/admin/tracking/emailevent/?q=a%00"):
        assert admin_client_logged_in.get(url).status_code == 400


# --- JSON that Python's decoder or PostgreSQL cannot take --------------------------------------------

JSON_ENDPOINTS = [(URL, "alice_client"), ("/api/v1/queue-management/pause", "platform_client")]


@pytest.mark.parametrize(("url", "persona"), JSON_ENDPOINTS)
@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(request, url, persona, depth):
    client = request.getfixturevalue(persona)
    response = post_raw(client, url, '{"name": ' + "[" * depth + "]" * depth + "}")
    assert response.status_code == 400
    assert "Nested deeper than 32 levels" in json.dumps(response.json())


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_a_400(alice_client, literal):
    response = post_raw(alice_client, URL, f'{{"name": "x", "lead_count": {literal}}}')
    assert response.status_code == 400
    assert not Campaign.objects.exists()


def test_a_lone_surrogate_is_a_400_naming_the_field(alice_client):
    response = post_raw(alice_client, URL, '{"name": "\\ud800"}')
    assert response.status_code == 400 and "name" in response.json()


def test_a_body_that_is_not_utf8_is_a_400(alice_client):
    response = post_raw(alice_client, URL, b'{"name": "\xff"}')
    assert response.status_code == 400


# --- datetimes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2020-01-01T00:00:00+18:00",  # an offset PostgreSQL refuses
        "2020-01-01T00:00:00-16:00",
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    ],
)
@pytest.mark.parametrize("parameter", ["created_after", "created_before"])
def test_a_datetime_filter_outside_what_can_be_stored_is_a_400(alice_client, value, parameter):
    response = alice_client.get(URL, {parameter: value})
    assert response.status_code == 400
    assert parameter in response.json()


def test_a_datetime_filter_with_a_real_offset_works(alice_client, org):
    CampaignFactory(organization=org)
    response = alice_client.get(URL, {"created_after": "2020-01-01T00:00:00+14:00"})
    assert response.status_code == 200 and response.json()["count"] == 1


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00", "2999-01-01T00:00:00+18:00"]
)
def test_a_schedule_time_outside_what_can_be_stored_is_a_400(alice_client, org, value):
    campaign = CampaignFactory(organization=org)
    response = alice_client.post(f"{URL}{campaign.pk}/schedule/", {"scheduled_at": value}, format="json")
    assert response.status_code == 400 and "scheduled_at" in response.json()
    campaign.refresh_from_db()
    assert campaign.status == "draft"


# --- every error under /api/ is JSON ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/api/v1/nothing-here/", "/api/v1/campaigns/x/y/z/", "/api/elsewhere", "/api/v1/queue-management/status/extra"],
)
def test_an_unmatched_api_route_is_a_json_404(alice_client, url):
    response = alice_client.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


def test_an_over_size_body_is_a_json_413(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_raw(alice_client, URL, json.dumps(campaign_body(description="d" * 2000)))
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json" and "too large" in response.json()["detail"]


def test_an_over_size_webhook_body_is_a_json_413(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("/api/v1/webhooks/generic/", "x" * 2000, content_type="application/json")
    assert response.status_code == 413 and response["Content-Type"] == "application/json"


def test_an_over_long_uri_is_a_json_414(alice_client):
    response = alice_client.get(URL + "?search=" + "a" * 5000)
    assert response.status_code == 414 and response["Content-Type"] == "application/json"


def test_a_non_api_error_page_stays_html(client):
    assert "application/json" not in client.get("/admin/nothing-here/")["Content-Type"]


# --- unknown and read-only fields are refused, each named -----------------------------------------------


def test_unknown_fields_in_a_create_are_refused_naming_each(alice_client):
    response = alice_client.post(URL, campaign_body(is_admin=True, foo="bar"), format="json")
    assert response.status_code == 400
    assert response.json()["is_admin"] == ["Unknown field."] and response.json()["foo"] == ["Unknown field."]
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/queue-management/pause", {"reason": "deploy", "is_admin": True}),
        ("/api/v1/queue-management/resume-service", {"force": True}),
        ("/api/v1/queue-management/circuit-breakers/apollo/reset", {"everything": True}),
    ],
)
def test_unknown_fields_in_queue_changes_are_refused(platform_client, url, body):
    response = platform_client.post(url, body, format="json")
    assert response.status_code == 400 and set(body) - {"reason"} <= set(response.json())
    assert QueueState.get().state == "active"


def test_unknown_fields_in_actions_and_recipient_adds_are_refused(alice_client, campaign):
    response = alice_client.post(f"{URL}{campaign.pk}/pause/", {"reason": "x", "force": True}, format="json")
    assert response.status_code == 400 and "force" in response.json()
    response = alice_client.post(f"{URL}{campaign.pk}/start/", {"reason": "x"}, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    response = alice_client.post(
        f"{URL}{campaign.pk}/recipients/", {"emails": ["a@example.org"], "priority": 1}, format="json"
    )
    assert response.status_code == 400 and "priority" in response.json()
    assert not Recipient.objects.exists()


def test_an_empty_action_reason_is_refused_as_the_schema_says(alice_client, campaign):
    response = alice_client.post(f"{URL}{campaign.pk}/pause/", {"reason": ""}, format="json")
    assert response.status_code == 400 and "reason" in response.json()
    assert not CampaignEvent.objects.filter(campaign=campaign, action="campaign.paused").exists()


@pytest.fixture
def campaign(org):
    return CampaignFactory(organization=org, status="running", phase="verification")


# --- the answer does not tell which slugs exist -----------------------------------------------------


def test_a_foreign_and_an_unknown_organization_slug_get_the_same_answer(alice_client, other_org):
    foreign = alice_client.post(URL, campaign_body(organization="globex"), format="json")
    unknown = alice_client.post(URL, campaign_body(organization="no-such-org"), format="json")
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json()["organization"][0].replace("globex", "X") == unknown.json()["organization"][0].replace(
        "no-such-org", "X"
    )
    assert not Campaign.objects.exists()


def test_a_non_string_organization_is_a_400(alice_client):
    response = alice_client.post(URL, campaign_body(organization=["acme"]), format="json")
    assert response.status_code == 400 and "organization" in response.json()


def test_no_sql_error_leaves_the_connection_broken(alice_client):
    alice_client.get(URL + "?search=%00")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_nul_in_the_admin_login_is_refused_by_the_form_not_a_500(client):
    response = client.post("/admin/login/?next=/admin/", {"username": "ad\x00min", "password": "p\x00w"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "raw",
    [
        '{"event_id": "e\\u0000", "type": "open", "message_id": "x"}',
        '{"event_id": "e", "type": "open", "message_id": "x", "extra": {"deep": "\\u0000"}}',
        '{"event_id": "e", "type": "open", "message_id": "x", "n": NaN}',
        '{"a": ' + "[" * 1000 + "]" * 1000 + "}",
    ],
)
def test_a_signed_webhook_with_a_hostile_payload_is_a_400(client, raw):
    import time

    from tracking.webhooks import VERIFIERS

    body = raw.encode()
    headers = VERIFIERS["generic"].sign(body=body, msg_id="m-1", timestamp=int(time.time()))
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    response = client.post("/api/v1/webhooks/generic/", body, content_type="application/json", **meta)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
