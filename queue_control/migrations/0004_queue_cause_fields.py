"""The queue latch's cause as fields (kind, service) instead of a `breaker:<service>` reason.
A paused latch whose reason names a breaker becomes kind breaker with that service (its reason
emptied); any other paused latch is an operator's (kind manual, their words kept)."""

from django.db import migrations, models
from django.db.models.functions import Substr

BREAKER_PREFIX = "breaker:"  # only here, to read the old row


def forwards(apps, schema_editor):
    QueueState = apps.get_model("queue_control", "QueueState")
    paused = QueueState.objects.filter(state="paused")
    paused.filter(reason__startswith=BREAKER_PREFIX).update(
        cause_kind="breaker", cause_service=Substr("reason", len(BREAKER_PREFIX) + 1, 32), reason=""
    )
    paused.filter(cause_kind="").update(cause_kind="manual")


def backwards(apps, schema_editor):
    QueueState = apps.get_model("queue_control", "QueueState")
    for latch in QueueState.objects.filter(cause_kind="breaker"):
        latch.reason = f"{BREAKER_PREFIX}{latch.cause_service}"
        latch.save(update_fields=["reason"])


class Migration(migrations.Migration):
    dependencies = [
        ("queue_control", "0003_operate_queue_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="queuestate",
            name="cause_kind",
            field=models.CharField(blank=True, choices=[("manual", "Manual"), ("breaker", "Breaker")], max_length=16),
        ),
        migrations.AddField(
            model_name="queuestate",
            name="cause_service",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.RunPython(forwards, backwards),
        # Sender mailboxes' own latch events (campaigns/mailboxes.py) share the history.
        migrations.AlterField(
            model_name="queueevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("queue.paused", "Queue Paused"),
                    ("queue.resumed", "Queue Resumed"),
                    ("queue.resume_refused", "Queue Resume Refused"),
                    ("breaker.opened", "Breaker Opened"),
                    ("breaker.reset", "Breaker Reset"),
                    ("mailbox.paused", "Mailbox Paused"),
                    ("mailbox.resumed", "Mailbox Resumed"),
                    ("mailbox.resume_refused", "Mailbox Resume Refused"),
                ],
                max_length=64,
            ),
        ),
    ]
