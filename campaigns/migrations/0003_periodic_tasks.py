"""The pipeline's beat schedule, as named django-celery-beat rows an operator can edit in the admin.

Idempotent: an existing row (perhaps edited by an operator) is left as it is. Each task expires a
little before its next run, so a backlog built up while workers were down is not replayed.
"""

from django.db import migrations
from django.utils import timezone

MINUTE = {"every": 1, "period": "minutes"}
QUARTER_HOUR = {"every": 15, "period": "minutes"}
DAILY_0330 = {
    "minute": "30",
    "hour": "3",
    "day_of_week": "*",
    "day_of_month": "*",
    "month_of_year": "*",
    "timezone": "UTC",
}
# name: (task, interval or None, crontab or None, expire_seconds, description)
TASKS = {
    "campaigns: cleanup old jobs": (
        "campaigns.tasks.cleanup_old_jobs",
        None,
        DAILY_0330,
        3600,
        "Deletes final jobs older than JOB_RETENTION_DAYS.",
    ),
    "campaigns: reap stuck jobs": (
        "campaigns.tasks.reap_stuck_jobs",
        MINUTE,
        None,
        55,
        "Jobs stuck in processing (lost worker) go back to pending, or fail after JOB_MAX_ATTEMPTS.",
    ),
    "campaigns: launch scheduled campaigns": (
        "campaigns.tasks.launch_scheduled_campaigns",
        MINUTE,
        None,
        55,
        "Starts scheduled campaigns that are due (not while the queue is paused).",
    ),
    "campaigns: sync Instantly analytics": (
        "campaigns.tasks.sync_instantly_analytics",
        QUARTER_HOUR,
        None,
        14 * 60,
        "Fetches Instantly's figures for campaigns pushed there (not while the queue is paused).",
    ),
}


def create_periodic_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, (task, interval, crontab, expire_seconds, description) in TASKS.items():
        schedule = {}
        if interval:
            schedule["interval"] = IntervalSchedule.objects.filter(**interval).first() or (
                IntervalSchedule.objects.create(**interval)
            )
        if crontab:
            schedule["crontab"] = CrontabSchedule.objects.filter(**crontab).first() or (
                CrontabSchedule.objects.create(**crontab)
            )
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "expire_seconds": expire_seconds, "description": description, **schedule},
        )
    # What PeriodicTasks.update_changed() does (historical models have no custom methods): tell a
    # running beat that the schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTask.objects.filter(name__in=list(TASKS)).delete()
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_pipeline_indexes"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_periodic_tasks, remove_periodic_tasks)]
