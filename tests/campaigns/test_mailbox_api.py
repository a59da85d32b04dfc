"""The mailbox API and admin: validation naming the field with nothing written, secrets never
shown back, organization scoping, roles, and the latch's actions."""

import pytest

from campaigns.mailboxes import mailbox_create, mailbox_pause
from campaigns.models import Mailbox
from campaigns.secrets import secret_decrypt
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/mailboxes/"
GOOD = {
    "name": "Anna",
    "from_email": "anna@acme.example",
    "from_name": "Anna at Acme",
    "smtp_host": "smtp.acme.example",
    "smtp_port": 587,
    "smtp_username": "anna",
    "smtp_password": "s3cret-smtp",
    "imap_host": "imap.acme.example",
    "imap_username": "anna",
    "imap_password": "s3cret-imap",
    "daily_cap": 40,
    "ramp_start_cap": 10,
    "ramp_daily_increase": 5,
    "min_gap_seconds": 30,
}


def test_an_operator_adds_a_mailbox_and_no_answer_carries_its_passwords(bob_client, org):
    campaign = CampaignFactory(organization=org)
    answer = bob_client.post(URL, {**GOOD, "campaigns": [str(campaign.pk)]}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert "smtp_password" not in body and "imap_password" not in body
    assert body["smtp_password_set"] is body["imap_password_set"] is True
    assert body["cap_today"] == 10 and body["breaker_state"] == "closed"
    assert "s3cret" not in str(bob_client.get(URL).json()) + str(bob_client.get(f"{URL}{body['id']}/").json())

    mailbox = Mailbox.objects.get()
    assert secret_decrypt(mailbox.smtp_password_encrypted) == "s3cret-smtp"
    assert list(campaign.mailboxes.all()) == [mailbox]


def test_an_update_without_a_password_keeps_the_stored_one(bob_client, org):
    mailbox = mailbox_create(
        organization=org, smtp_password="keep-me", **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")}
    )
    answer = bob_client.patch(f"{URL}{mailbox.pk}/", {"daily_cap": 80}, format="json")
    assert answer.status_code == 200 and answer.json()["daily_cap"] == 80
    mailbox.refresh_from_db()
    assert secret_decrypt(mailbox.smtp_password_encrypted) == "keep-me"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from_email": "not an address"}, "from_email"),
        ({"smtp_port": 70000}, "smtp_port"),
        ({"daily_cap": 0}, "daily_cap"),
        ({"ramp_start_cap": 100}, "ramp_start_cap"),  # above the daily cap
        ({"ramp_daily_increase": 0}, "ramp_daily_increase"),  # a ramp that never rises
        ({"min_gap_seconds": -1}, "min_gap_seconds"),
        ({"smtp_security": "ssl3"}, "smtp_security"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_written(bob_client, change, field):
    answer = bob_client.post(URL, {**GOOD, **change}, format="json")
    assert answer.status_code == 400
    assert field in str(answer.json())
    assert not Mailbox.objects.exists()


def test_another_organizations_campaign_cannot_be_attached(bob_client, other_org):
    foreign = CampaignFactory(organization=other_org)
    answer = bob_client.post(URL, {**GOOD, "campaigns": [str(foreign.pk)]}, format="json")
    assert answer.status_code == 400 and "campaigns" in answer.json()
    assert not Mailbox.objects.exists()


def test_other_organizations_see_a_404_and_viewers_cannot_write(charlie_client, viewer_client, org):
    mailbox = mailbox_create(organization=org, **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")})
    assert charlie_client.get(f"{URL}{mailbox.pk}/").status_code == 404
    assert charlie_client.get(URL).json()["results"] == []
    assert viewer_client.get(f"{URL}{mailbox.pk}/").status_code == 200
    assert viewer_client.patch(f"{URL}{mailbox.pk}/", {"daily_cap": 5}, format="json").status_code == 403
    assert viewer_client.post(URL, GOOD, format="json").status_code == 403
    assert viewer_client.get(f"{URL}not-a-number/").status_code == 404


def test_a_paused_mailbox_resumes_through_the_api_with_its_refusals(bob_client, org):
    mailbox = mailbox_create(organization=org, **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")})
    mailbox_pause(mailbox_id=mailbox.pk, kind="breaker", figure="ConnectionError")
    from queue_control.breakers import breaker_failure_count, mailbox_breaker

    breaker_failure_count(mailbox_breaker(mailbox.pk), "down", trips_immediately=True)

    refused = bob_client.post(f"{URL}{mailbox.pk}/resume/", {}, format="json")
    assert refused.status_code == 409 and "breaker" in refused.json()["detail"]
    reset = bob_client.post(f"{URL}{mailbox.pk}/reset-breaker/")
    assert reset.status_code == 200 and reset.json()["breaker_state"] == "closed"
    assert reset.json()["pause_kind"] == "breaker"  # a reset resumes nothing
    resumed = bob_client.post(f"{URL}{mailbox.pk}/resume/", {}, format="json")
    assert resumed.status_code == 200 and resumed.json()["pause_kind"] == ""
    assert bob_client.get(f"{URL}?paused=true").json()["results"] == []


def test_a_mailbox_recipients_were_given_cannot_be_deleted(bob_client, org):
    from tracking.models import Recipient

    campaign = CampaignFactory(organization=org)
    mailbox = mailbox_create(organization=org, **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")})
    Recipient.objects.create(campaign=campaign, email="x@example.org", mailbox=mailbox)
    assert bob_client.delete(f"{URL}{mailbox.pk}/").status_code == 409
    assert Mailbox.objects.filter(pk=mailbox.pk).exists()


def test_the_admin_never_renders_a_password_and_saves_through_the_services(admin_client_logged_in, org):
    mailbox = mailbox_create(
        organization=org, smtp_password="hidden-pass", **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")}
    )
    page = admin_client_logged_in.get(f"/admin/campaigns/mailbox/{mailbox.pk}/change/").content.decode()
    assert "hidden-pass" not in page and mailbox.smtp_password_encrypted not in page
    form = {
        "organization": org.pk,
        **{k: v for k, v in GOOD.items() if not k.endswith("password")},
        "smtp_security": "starttls",
        "imap_port": 993,
        "imap_ssl": "on",
        "ramp_started_on": "2026-01-01",
        "active": "on",
        "smtp_password": "",
        "imap_password": "new-imap",
    }
    answer = admin_client_logged_in.post(f"/admin/campaigns/mailbox/{mailbox.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    mailbox.refresh_from_db()
    assert secret_decrypt(mailbox.smtp_password_encrypted) == "hidden-pass"  # blank: kept
    assert secret_decrypt(mailbox.imap_password_encrypted) == "new-imap"
    assert mailbox.daily_cap == 40


def test_the_admin_refuses_a_ramp_above_the_cap_naming_the_field(admin_client_logged_in, org):
    form = {
        "organization": org.pk,
        **{k: v for k, v in GOOD.items() if not k.endswith("password")},
        "smtp_security": "starttls",
        "imap_port": 993,
        "ramp_started_on": "2026-01-01",
        "ramp_start_cap": 100,
    }
    page = admin_client_logged_in.post("/admin/campaigns/mailbox/add/", form)
    assert page.status_code == 200
    assert "The ramp-up cannot start above the daily cap." in page.content.decode()
    assert not Mailbox.objects.exists()


def test_a_second_mailbox_of_the_same_name_is_a_400_on_name(bob_client):
    assert bob_client.post(URL, GOOD, format="json").status_code == 201
    again = bob_client.post(URL, {**GOOD, "from_email": "other@acme.example"}, format="json")
    assert again.status_code == 400 and "name" in again.json()
    assert Mailbox.objects.count() == 1


def test_the_demo_seed_gives_its_first_campaign_two_sandbox_mailboxes_on_the_run_sink(monkeypatch):
    from campaigns.management.commands.seed_demo import DEMO_CAMPAIGNS, Command

    monkeypatch.setenv("SMTP_SINK_PORT", "2599")
    Command().handle(username="demo", password="pw-123456")
    Command().handle(username="demo", password="pw-123456")  # idempotent
    campaign = CampaignFactory._meta.model.objects.get(name=DEMO_CAMPAIGNS[0][0])
    mailboxes = list(campaign.mailboxes.order_by("name"))
    assert [(m.name, m.smtp_host, m.smtp_port, m.smtp_security) for m in mailboxes] == [
        ("sandbox-1", "127.0.0.1", 2599, "none"),
        ("sandbox-2", "127.0.0.1", 2599, "none"),
    ]
    assert Mailbox.objects.count() == 2


def test_the_campaign_page_lists_its_mailboxes_with_their_latch(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="paused", pause_kind="manual")
    mailbox = mailbox_create(
        organization=org, campaigns=[campaign], **{k: GOOD[k] for k in ("name", "from_email", "smtp_host")}
    )
    mailbox_pause(mailbox_id=mailbox.pk, kind="deliverability", figure="bounce rate 9.0% > 5.0% (9 of 100 sends)")
    page = admin_client_logged_in.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'id="campaign-mailboxes"' in page
    assert "anna@acme.example" in page and "deliverability: bounce rate 9.0% &gt; 5.0%" in page
