"""The beat row that drains the opens the pixel buffers in Redis (tracking.tasks.drain_opens).

Idempotent like campaigns 0003: an existing row (perhaps edited by an operator) is left as it is.
It expires after a few runs' time, so runs queued while workers were busy or down do not pile up
(each run drains the whole buffer anyway).
"""

from django.db import migrations
from django.utils import timezone

NAME = "tracking: drain buffered opens"
TASK = "tracking.tasks.drain_opens"
EVERY_2_SECONDS = {"every": 2, "period": "seconds"}
EXPIRE_SECONDS = 10
DESCRIPTION = "Writes the opens the pixel buffered in Redis to the database, in batches."


def create_periodic_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    interval = IntervalSchedule.objects.filter(**EVERY_2_SECONDS).first() or IntervalSchedule.objects.create(
        **EVERY_2_SECONDS
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={"task": TASK, "interval": interval, "expire_seconds": EXPIRE_SECONDS, "description": DESCRIPTION},
    )
    # What PeriodicTasks.update_changed() does: tell a running beat that the schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_periodic_task(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTask.objects.filter(name=NAME).delete()
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_task, remove_periodic_task)]
