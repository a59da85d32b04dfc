"""The pause cause as fields (kind, service, mailbox, figure) instead of the `pause_reason` string
("breaker:<service>" was parsed in several places). Existing rows are carried over: `manual`,
`job`, `queue` keep their kind; `breaker:<service>` becomes kind breaker with the service; any
other non-empty reason (none are written today) becomes `queue`, which resumes with the queue."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models.functions import Substr

BREAKER_PREFIX = "breaker:"  # only here, to read the old rows


def forwards(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    for kind in ("manual", "job", "queue"):
        Campaign.objects.filter(pause_reason=kind).update(pause_kind=kind)
    Campaign.objects.filter(pause_reason__startswith=BREAKER_PREFIX).update(
        pause_kind="breaker", pause_service=Substr("pause_reason", len(BREAKER_PREFIX) + 1, 32)
    )
    Campaign.objects.exclude(pause_reason="").filter(pause_kind="").update(pause_kind="queue")


def backwards(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    for kind in ("manual", "job", "queue", "deliverability"):
        Campaign.objects.filter(pause_kind=kind).update(pause_reason=kind)
    for service in Campaign.objects.filter(pause_kind="breaker").values_list("pause_service", flat=True).distinct():
        Campaign.objects.filter(pause_kind="breaker", pause_service=service).update(
            pause_reason=f"{BREAKER_PREFIX}{service or 'smtp'}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0008_mailboxes"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="pause_kind",
            field=models.CharField(
                blank=True,
                choices=[
                    ("manual", "Manual"),
                    ("job", "Job"),
                    ("queue", "Queue"),
                    ("breaker", "Breaker"),
                    ("deliverability", "Deliverability"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="campaign",
            name="pause_service",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="campaign",
            name="pause_figure",
            field=models.CharField(blank=True, max_length=255),
        ),
        migrations.AddField(
            model_name="campaign",
            name="pause_mailbox",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="campaigns.mailbox",
            ),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(
            model_name="campaign",
            name="pause_reason",
        ),
    ]
