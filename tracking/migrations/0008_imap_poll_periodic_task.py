"""The beat row of the IMAP reply poller (tracking.tasks.poll_imap, on the housekeeping queue).
Idempotent like 0002 and 0005: an existing row (perhaps edited by an operator) is left as it is.
It expires after two runs' time, so polls queued while workers were down do not pile up (each
poll reads everything new since the last one anyway)."""

from django.db import migrations
from django.utils import timezone

NAME = "replies: poll IMAP mailboxes"


def create_periodic_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every = {"every": 60, "period": "seconds"}
    interval = IntervalSchedule.objects.filter(**every).first() or IntervalSchedule.objects.create(**every)
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "tracking.tasks.poll_imap",
            "interval": interval,
            "expire_seconds": 120,
            "description": "Reads new mail in every IMAP account (tracking.imap.imap_accounts) and records "
            "replies, auto-replies and bounces. `manage.py imap_idle` does the same at once by IDLE.",
        },
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_periodic_task(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTask.objects.filter(name=NAME).delete()
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0007_imap_account_state"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_task, remove_periodic_task)]
