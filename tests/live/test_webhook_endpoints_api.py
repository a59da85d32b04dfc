"""The webhook endpoints API: owners and operators manage their organization's endpoints,
viewers read, other organizations see nothing; the secret is shown on creation and rotation only;
the delivery log and its replay."""

from campaigns import services as campaign_services
from tracking import outbound
from tracking.models import WebhookDelivery, WebhookEndpoint

URL = "https://hooks.acme.example/in"


def create(client, **extra):
    body = {"url": URL, "event_types": ["campaign.status_changed", "email.sent"], **extra}
    return client.post("/api/v1/webhook-endpoints/", body, format="json")


def test_an_operator_adds_an_endpoint_and_sees_its_secret_once(bob_client, org):
    answer = create(bob_client, description="CRM")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["organization"] == "acme" and body["secret"].startswith("whsec_")
    assert body["event_types"] == ["campaign.status_changed", "email.sent"] and body["is_active"] is True
    detail = bob_client.get(f"/api/v1/webhook-endpoints/{body['id']}/").json()
    assert "secret" not in detail
    rotated = bob_client.post(f"/api/v1/webhook-endpoints/{body['id']}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"]
    assert WebhookEndpoint.objects.get().secret == rotated["secret"]


def test_bad_urls_and_unknown_event_types_are_400s(bob_client, org, settings):
    settings.OUTGOING_WEBHOOK_ALLOWED_NETWORKS = []
    assert create(bob_client, url="http://127.0.0.1:9/x").status_code == 400
    assert create(bob_client, url="javascript:alert(1)").status_code == 400
    assert create(bob_client, event_types=["email.teleported"]).status_code == 400
    assert create(bob_client, event_types=[]).status_code == 400
    assert create(bob_client, secret="mine").status_code == 400  # not settable
    assert not WebhookEndpoint.objects.exists()


def test_viewers_read_but_cannot_change_and_other_organizations_see_nothing(
    bob_client, viewer_client, charlie_client, org
):
    endpoint_id = create(bob_client).json()["id"]
    assert viewer_client.get("/api/v1/webhook-endpoints/").json()["count"] == 1
    assert create(viewer_client).status_code == 403
    assert viewer_client.patch(f"/api/v1/webhook-endpoints/{endpoint_id}/", {"description": "x"}).status_code == 403
    assert charlie_client.get("/api/v1/webhook-endpoints/").json()["count"] == 0
    assert charlie_client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/").status_code == 404
    assert charlie_client.delete(f"/api/v1/webhook-endpoints/{endpoint_id}/").status_code == 404
    assert charlie_client.get("/api/v1/webhook-endpoints/nope/").status_code == 404


def test_the_delivery_log_shows_each_delivery_and_an_operator_replays_one(bob_client, alice, org, running_campaign):
    endpoint = outbound.endpoint_create(organization=org, url=URL, event_types=["campaign.status_changed"])
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)
    WebhookDelivery.objects.update(status="failed", last_error="HTTP 500", attempts=3)
    log = bob_client.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries/?status=failed").json()
    [entry] = log["results"]
    assert entry["event_type"] == "campaign.status_changed" and entry["attempts"] == 3
    assert entry["payload"]["data"]["to_status"] == "paused" and entry["payload"]["id"] == entry["event_id"]

    replay = bob_client.post(f"/api/v1/webhook-deliveries/{entry['id']}/replay")
    assert replay.status_code == 202 and replay.json()["status"] == "pending"


def test_a_disabled_endpoint_is_re_enabled_by_patch_and_refuses_replays_until_then(bob_client, org, running_campaign):
    endpoint = outbound.endpoint_create(organization=org, url=URL, event_types=["email.sent"])
    delivery = outbound.endpoint_test(endpoint=endpoint)
    outbound.endpoint_disable(endpoint=endpoint, reason="gone for days")
    answer = bob_client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay")
    assert answer.status_code == 409 and "disabled" in answer.json()["detail"]
    assert bob_client.post(f"/api/v1/webhook-endpoints/{endpoint.pk}/test/").status_code == 409
    enabled = bob_client.patch(f"/api/v1/webhook-endpoints/{endpoint.pk}/", {"is_active": True}, format="json").json()
    assert enabled["is_active"] is True and enabled["disabled_reason"] == ""
    assert bob_client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay").status_code == 202


def test_another_organizations_delivery_cannot_be_replayed(charlie_client, org):
    endpoint = outbound.endpoint_create(organization=org, url=URL, event_types=["email.sent"])
    delivery = outbound.endpoint_test(endpoint=endpoint)
    assert charlie_client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay").status_code == 404
    assert charlie_client.post("/api/v1/webhook-deliveries/x/replay").status_code == 404
