import pytest

from campaigns.models import Job
from tests.factories import CampaignFactory, LeadFactory
from tracking.models import Recipient
from tracking.services import suppression_add

pytestmark = pytest.mark.django_db


def url(campaign, suffix: str = "") -> str:
    return f"/api/v1/campaigns/{campaign.pk}/recipients{suffix}"


def test_adding_emails_skips_duplicates_and_suppressed_addresses(alice_client, campaign):
    suppression_add(organization_id=campaign.organization_id, email="blocked@example.org", reason="bounced")
    Recipient.objects.create(campaign=campaign, email="old@example.org")

    response = alice_client.post(
        url(campaign),
        {"emails": ["New@Example.org", "new@example.org ", "old@example.org", "BLOCKED@example.org", "b@example.org"]},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json() == {"created": 2, "duplicates": 2, "suppressed": 1, "invalid": 0}
    assert sorted(campaign.recipients.values_list("email", flat=True)) == [
        "b@example.org",
        "new@example.org",
        "old@example.org",
    ]


def test_invalid_addresses_are_a_400_naming_them_and_nothing_is_written(alice_client, campaign):
    response = alice_client.post(
        url(campaign), {"emails": ["fine@example.org", "not-an-email", "a@b@c.org"]}, format="json"
    )

    assert response.status_code == 400
    [message] = response.json()["emails"]
    assert "'not-an-email'" in message and "'a@b@c.org'" in message and "fine@" not in message
    assert not Recipient.objects.exists()


def test_an_empty_request_is_a_400(alice_client, campaign):
    response = alice_client.post(url(campaign), {}, format="json")
    assert response.status_code == 400 and "emails" in response.json()


def test_adding_leads_skips_those_that_failed_verification(alice_client, campaign):
    good = LeadFactory(campaign=campaign, email="Good@Example.org", email_status="valid")
    bad = LeadFactory(campaign=campaign, email="bad@example.org", email_status="invalid")

    response = alice_client.post(url(campaign), {"lead_ids": [good.pk, bad.pk]}, format="json")

    assert response.json() == {"created": 1, "duplicates": 0, "suppressed": 0, "invalid": 1}
    recipient = Recipient.objects.get()
    assert (recipient.email, recipient.lead_id, recipient.status) == ("good@example.org", good.pk, "pending")


def test_leads_of_another_campaign_are_a_400(alice_client, campaign, other_campaign):
    foreign = LeadFactory(campaign=other_campaign)
    response = alice_client.post(url(campaign), {"lead_ids": [foreign.pk]}, format="json")
    assert response.status_code == 400 and str(foreign.pk) in response.json()["lead_ids"][0]
    assert not Recipient.objects.exists()


def test_recipients_added_during_outreach_get_send_jobs(alice_client, campaign, settings):
    settings.SEND_BATCH_SIZE = 2
    alice_client.post(url(campaign), {"emails": [f"p{i}@example.org" for i in range(3)]}, format="json")
    assert Job.objects.filter(campaign=campaign, job_type="send_email", status="pending").count() == 2


def test_recipients_added_before_outreach_wait_for_the_launch(alice_client, org):
    draft = CampaignFactory(organization=org, status="draft")
    alice_client.post(url(draft), {"emails": ["p@example.org"]}, format="json")
    assert not Job.objects.exists()


@pytest.mark.parametrize("status", ["completed", "cancelled", "failed"])
def test_finished_campaigns_take_no_recipients(alice_client, org, status):
    finished = CampaignFactory(organization=org, status=status)
    response = alice_client.post(url(finished), {"emails": ["p@example.org"]}, format="json")
    assert response.status_code == 409 and response.json()["current_status"] == status
    assert not Recipient.objects.exists()


def test_the_list_is_paginated_filtered_and_searchable(alice_client, campaign, django_assert_max_num_queries):
    Recipient.objects.bulk_create(
        [Recipient(campaign=campaign, email=f"user{i}@example.org") for i in range(5)]
        + [Recipient(campaign=campaign, email="vip@acme.example", status="sent")]
    )

    with django_assert_max_num_queries(6):
        page = alice_client.get(url(campaign), {"page_size": 2}).json()
    assert "count" not in page and len(page["results"]) == 2 and page["next"]  # no COUNT(*): decisions.md
    emails = [r["email"] for r in page["results"]]
    while page["next"]:
        page = alice_client.get(page["next"]).json()
        emails += [r["email"] for r in page["results"]]
    assert sorted(emails) == sorted([f"user{i}@example.org" for i in range(5)] + ["vip@acme.example"])

    sent = alice_client.get(url(campaign), {"status": "sent"}).json()
    assert [r["email"] for r in sent["results"]] == ["vip@acme.example"]
    found = alice_client.get(url(campaign), {"search": "ACME"}).json()
    assert [r["email"] for r in found["results"]] == ["vip@acme.example"]
    assert "token" not in found["results"][0]
    assert alice_client.get(url(campaign), {"status": "nonsense"}).status_code == 400


def test_a_pending_recipient_can_be_removed(alice_client, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="p@example.org")
    assert alice_client.delete(url(campaign, f"/{recipient.pk}")).status_code == 204
    assert not Recipient.objects.exists()


def test_a_recipient_already_claimed_cannot_be_removed(alice_client, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="p@example.org", status="sending")
    response = alice_client.delete(url(campaign, f"/{recipient.pk}"))
    assert response.status_code == 409 and response.json()["current_status"] == "sending"
    assert Recipient.objects.exists()


def test_a_recipient_waiting_for_a_later_step_cannot_be_removed(alice_client, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="p@example.org", sequence_step=2)
    response = alice_client.delete(url(campaign, f"/{recipient.pk}"))
    assert response.status_code == 409 and "sequence has mailed" in response.json()["detail"]
    assert Recipient.objects.exists()


def test_removing_an_unknown_recipient_is_a_404(alice_client, campaign, other_campaign):
    foreign = Recipient.objects.create(campaign=other_campaign, email="p@example.org")
    assert alice_client.delete(url(campaign, f"/{foreign.pk}")).status_code == 404
    assert alice_client.delete(url(campaign, "/999999")).status_code == 404
    assert Recipient.objects.filter(pk=foreign.pk).exists()


def test_another_organization_sees_nothing_and_changes_nothing(charlie_client, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="p@example.org")
    assert charlie_client.get(url(campaign)).status_code == 404
    assert charlie_client.post(url(campaign), {"emails": ["x@example.org"]}, format="json").status_code == 404
    assert charlie_client.delete(url(campaign, f"/{recipient.pk}")).status_code == 404
    assert charlie_client.get(f"/api/v1/campaigns/{campaign.pk}/stats").status_code == 404
    assert charlie_client.get(f"/api/v1/campaigns/{campaign.pk}/analytics").status_code == 404
    assert list(Recipient.objects.values_list("email", flat=True)) == ["p@example.org"]


def test_a_viewer_reads_but_does_not_change(viewer_client, campaign):
    assert viewer_client.get(url(campaign)).status_code == 200
    assert viewer_client.post(url(campaign), {"emails": ["x@example.org"]}, format="json").status_code == 403


def test_anonymous_and_malformed_requests(anon_client, alice_client, campaign):
    assert anon_client.get(url(campaign)).status_code in (401, 403)
    assert alice_client.get("/api/v1/campaigns/not-a-uuid/recipients").status_code == 404
