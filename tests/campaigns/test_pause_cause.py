"""The pause cause is stored as fields (kind, service, mailbox, figure), never parsed out of a
string; the API and the live payloads carry the fields and a derived display string; the data
migrations carried existing `breaker:<service>` rows over."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import Campaign
from queue_control.models import QueueState
from queue_control.services import queue_pause
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory
from tracking.live import campaign_progress_message


@pytest.mark.django_db
def test_a_breaker_pause_stores_kind_and_service_on_the_latch_and_the_campaigns(org):
    campaign = CampaignFactory(organization=org, status="running")
    breaker_trip(service="apollo")
    latch = QueueState.get()
    assert (latch.cause_kind, latch.cause_service, latch.reason) == ("breaker", "apollo", "")
    campaign.refresh_from_db()
    assert (campaign.pause_kind, campaign.pause_service, campaign.pause_mailbox_id) == ("breaker", "apollo", None)


@pytest.mark.django_db
def test_an_operator_pause_is_kind_manual_on_the_latch_and_queue_on_the_campaigns(org, staff):
    campaign = CampaignFactory(organization=org, status="running")
    queue_pause(reason="deploying", actor=staff)
    latch = QueueState.get()
    assert (latch.cause_kind, latch.cause_service, latch.reason, latch.cause_display) == (
        "manual",
        "",
        "deploying",
        "deploying",
    )
    campaign.refresh_from_db()
    assert (campaign.pause_kind, campaign.pause_service) == ("queue", "")


@pytest.mark.django_db
def test_the_api_shows_the_fields_and_the_display_string(bob_client, org, platform_client):
    campaign = CampaignFactory(organization=org, status="running")
    breaker_trip(service="openai")
    body = bob_client.get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert body["pause_reason"] == "breaker:openai"
    assert body["pause"] == {"kind": "breaker", "service": "openai", "mailbox": None, "figure": None}
    status = platform_client.get("/api/v1/queue-management/status").json()
    assert (status["reason"], status["cause_kind"], status["cause_service"]) == ("breaker:openai", "breaker", "openai")
    campaign.refresh_from_db()
    message = campaign_progress_message(campaign=campaign)
    assert message["data"]["pause"]["kind"] == "breaker" and message["data"]["pause_cause"] == "breaker:openai"


@pytest.mark.django_db(transaction=True)
def test_the_data_migrations_carry_old_reasons_over_to_the_fields():
    executor = MigrationExecutor(connection)
    before = [
        ("campaigns", "0008_mailboxes"),
        ("queue_control", "0003_operate_queue_permission"),
        ("tracking", "0009_recipient_mailbox"),
    ]
    leaf = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        Organization = old.get_model("campaigns", "Organization")
        OldCampaign = old.get_model("campaigns", "Campaign")
        org = Organization.objects.create(name="Old", slug="old")
        for name, reason in [("a", "breaker:millionverifier"), ("b", "manual"), ("c", "job"), ("d", ""), ("e", "odd")]:
            OldCampaign.objects.create(
                organization=org, name=name, status="paused" if reason else "running", pause_reason=reason
            )
        old.get_model("queue_control", "QueueState").objects.update_or_create(
            pk=1, defaults={"state": "paused", "reason": "breaker:apollo"}
        )

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaf)

        fields = dict(
            (name, (kind, service))
            for name, kind, service in Campaign.objects.values_list("name", "pause_kind", "pause_service")
        )
        assert fields == {
            "a": ("breaker", "millionverifier"),
            "b": ("manual", ""),
            "c": ("job", ""),
            "d": ("", ""),
            "e": ("queue", ""),
        }
        latch = QueueState.objects.get(pk=1)
        assert (latch.cause_kind, latch.cause_service, latch.reason) == ("breaker", "apollo", "")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
