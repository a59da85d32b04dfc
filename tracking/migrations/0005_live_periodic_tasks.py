"""The beat rows of live operations and outgoing webhooks. Idempotent like 0002: an existing row
(perhaps edited by an operator) is left as it is. Each expires after a few runs' time, so runs
queued while workers were busy or down do not pile up (each run does all that is due anyway)."""

from django.db import migrations
from django.utils import timezone

TASKS = [
    (
        "live: publish campaign progress",
        "tracking.tasks.publish_live",
        {"every": 1, "period": "seconds"},
        5,
        "Sends campaign.progress (and queue.state) to the WebSocket for what changed: at most once a second each.",
    ),
    (
        "webhooks: deliver due",
        "tracking.tasks.deliver_webhooks",
        {"every": 5, "period": "seconds"},
        20,
        "Delivers outgoing webhooks that are due (retries after backoff; new ones are sent at once).",
    ),
    (
        "webhooks: upkeep",
        "tracking.tasks.webhooks_upkeep",
        {"every": 60, "period": "seconds"},
        120,
        "Gives up deliveries past their retry window, disables endpoints failing for too long, deletes old ones.",
    ),
]


def create_periodic_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, every, expire_seconds, description in TASKS:
        interval = IntervalSchedule.objects.filter(**every).first() or IntervalSchedule.objects.create(**every)
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "expire_seconds": expire_seconds, "description": description},
        )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in TASKS]).delete()
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0004_outgoing_webhooks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_tasks, remove_periodic_tasks)]
