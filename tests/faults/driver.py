"""The acts of people in a fault test, run as a process of the system under test (its settings come
from the environment the harness gives it): an integrator creating and starting campaigns, an
operator resetting breakers and resuming the queue, and a report of what the database holds.
Each command prints one JSON line.

    driver.py campaigns 3 120     # three CSV campaigns of 120 leads each, started
    driver.py sequences 2 60      # two such campaigns with a follow-up step due at once, started
    driver.py resume              # every open breaker reset, then the queue resumed
    driver.py resolve a@x,b@y <id> ...  # the operator resolves recipients stuck in sending
    driver.py report <id> ...     # each campaign's figures
"""

import io
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db.models import Count  # noqa: E402

from campaigns import services  # noqa: E402
from campaigns.csv_import import leads_import_csv  # noqa: E402
from campaigns.models import Campaign, CampaignPhase, Job, Lead, Organization  # noqa: E402
from queue_control.selectors import breakers_not_closed, queue_status  # noqa: E402
from queue_control.services import breaker_reset, queue_resume  # noqa: E402
from tracking.models import Recipient, SequenceStep  # noqa: E402
from tracking.services import recipients_release, recipients_resolve  # noqa: E402


def campaigns(count: str, leads: str, follow_up: bool = False) -> dict:
    org, _ = Organization.objects.get_or_create(
        slug="faults", defaults={"name": "Faults", "postal_address": "1 Faults Street, 10115 Berlin"}
    )
    ids = []
    for number in range(int(count)):
        campaign = services.campaign_create(
            organization=org,
            name=f"Faults {number}",
            channel="smtp",
            from_email="sender@acme.example",
            subject_template="Hello {{ first_name }}",
            body_template="Hi {{ first_name }}, {{ personalization }} https://example.com/offer",
            send_rate_per_minute=600_000,
        )
        rows = ["email,first_name,company"]
        domain = f"c{campaign.pk.hex[:12]}.example"  # addresses of their own, whatever ran before
        for i in range(int(leads)):
            local = f"bad.p{i}" if i % 10 == 0 else f"p{i}"
            rows.append(f"{local}@{domain},P{i},Company {number}")
        leads_import_csv(campaign_id=campaign.pk, file=io.BytesIO("\n".join(rows).encode()), file_name="f.csv")
        if follow_up:  # step 2, due as soon as step 1 went out: the sweeper arms it
            SequenceStep.objects.create(campaign=campaign, number=2, delay_days=0, body_template="Following up")
        services.campaign_start(campaign_id=campaign.pk)
        ids.append(str(campaign.pk))
    return {"ids": ids}


def sequences(count: str, leads: str) -> dict:
    return campaigns(count, leads, follow_up=True)


def resume() -> dict:
    operator, _ = get_user_model().objects.get_or_create(username="oncall", defaults={"is_staff": True})
    reset = list(breakers_not_closed())
    for service in reset:
        breaker_reset(service=service, actor=operator)
    queue_resume(actor=operator)
    return {"reset": reset, "queue": queue_status()["state"]}


def resolve(delivered: str, *ids: str) -> dict:
    """The operator checked the mail server's log for the recipients stuck in sending: those it
    shows accepted (`delivered`, comma-separated addresses) are marked sent, the others are
    released to be sent again."""
    operator, _ = get_user_model().objects.get_or_create(username="oncall", defaults={"is_staff": True})
    stuck = Recipient.objects.filter(campaign_id__in=ids, status="sending")
    accepted = set(filter(None, delivered.split(",")))
    return {
        "marked_sent": recipients_resolve(
            recipient_ids=list(stuck.filter(email__in=accepted).values_list("pk", flat=True)),
            delivered=True,
            actor=operator,
        ),
        "released": recipients_release(
            recipient_ids=list(stuck.exclude(email__in=accepted).values_list("pk", flat=True)), actor=operator
        ),
    }


def report(*ids: str) -> dict:
    result = {}
    for campaign in Campaign.objects.filter(pk__in=ids):
        leads = Lead.objects.filter(campaign=campaign)
        result[str(campaign.pk)] = {
            "status": campaign.status,
            "status_message": campaign.status_message,
            "status_error": campaign.status_error,
            "pause_reason": campaign.pause_cause,
            "leads": leads.count(),
            "by_email_status": dict(leads.values_list("email_status").annotate(n=Count("pk"))),
            "enriched": leads.filter(enriched_at__isnull=False).count(),
            "recipients": dict(
                Recipient.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("pk"))
            ),
            "sent_to": sorted(
                Recipient.objects.filter(campaign=campaign, status="sent").values_list("email", flat=True)
            ),
            "jobs": dict(Job.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("pk"))),
            "phases": {
                row.phase: {
                    "items_total": row.items_total,
                    "items_done": row.items_done,
                    "items_passed": row.items_passed,
                    "items_failed": row.items_failed,
                    "finished": row.finished_at is not None,
                }
                for row in CampaignPhase.objects.filter(campaign=campaign)
            },
        }
    return result


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    commands = {"campaigns": campaigns, "sequences": sequences, "resume": resume, "resolve": resolve, "report": report}
    print(json.dumps(commands[command](*arguments)))
