"""The beat schedule (migration 0003) and the periodic tasks it runs."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from campaigns import tasks
from campaigns.models import Campaign, InstantlyAnalytics, Job
from campaigns.states import JobType
from campaigns_project.celery import app
from integrations.sandbox import InstantlySandbox
from queue_control.models import QueueState
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

schedule = importlib.import_module("campaigns.migrations.0003_periodic_tasks")


def test_the_migration_creates_the_named_periodic_tasks_once():
    PeriodicTask.objects.filter(name__in=list(schedule.TASKS)).delete()
    schedule.create_periodic_tasks(django_apps, None)
    schedule.create_periodic_tasks(django_apps, None)

    rows = {task.name: task for task in PeriodicTask.objects.filter(name__in=list(schedule.TASKS))}
    assert set(rows) == set(schedule.TASKS)
    assert rows["campaigns: reap stuck jobs"].interval.every == 1
    assert rows["campaigns: launch scheduled campaigns"].interval.period == "minutes"
    assert rows["campaigns: sync Instantly analytics"].interval.every == 15
    assert (rows["campaigns: cleanup old jobs"].crontab.hour, rows["campaigns: cleanup old jobs"].crontab.minute) == (
        "3",
        "30",
    )
    assert IntervalSchedule.objects.filter(every=1, period="minutes").count() == 1
    assert CrontabSchedule.objects.filter(minute="30", hour="3").count() == 1
    assert PeriodicTasks.objects.get(ident=1).last_update is not None


def test_the_migration_keeps_an_operators_edits():
    schedule.create_periodic_tasks(django_apps, None)
    PeriodicTask.objects.filter(name="campaigns: reap stuck jobs").update(enabled=False)
    schedule.create_periodic_tasks(django_apps, None)
    assert PeriodicTask.objects.get(name="campaigns: reap stuck jobs").enabled is False


def test_the_sweeper_replaced_the_reaper_and_runs_every_20_seconds():
    rows = {task.name: task for task in PeriodicTask.objects.all()}
    assert "campaigns: reap stuck jobs" not in rows
    sweep = rows["campaigns: sweep"]
    assert (sweep.task, sweep.interval.every, sweep.interval.period) == ("campaigns.tasks.sweep", 20, "seconds")


# Outgoing webhooks (issue 14) run on their own queue: customers' URLs must not hold up housekeeping.
WEBHOOK_TASKS = {"tracking.tasks.deliver_webhooks", "tracking.tasks.webhooks_upkeep"}


def test_every_scheduled_task_exists_in_the_celery_app_and_runs_on_the_housekeeping_queue(settings):
    app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    tasks_scheduled = set(PeriodicTask.objects.exclude(task="celery.backend_cleanup").values_list("task", flat=True))
    assert tasks_scheduled
    for task in tasks_scheduled:
        assert task in app.tasks
        queue = "webhooks" if task in WEBHOOK_TASKS else "housekeeping"
        assert app.amqp.router.route({}, task)["queue"].name == settings.CELERY_QUEUE_NAMES[queue]


def test_due_scheduled_campaigns_are_started(org):
    due = CampaignFactory(organization=org, status="scheduled", scheduled_at=timezone.now() - timedelta(minutes=1))
    later = CampaignFactory(organization=org, status="scheduled", scheduled_at=timezone.now() + timedelta(hours=1))

    assert tasks.launch_scheduled_campaigns() == 1
    due.refresh_from_db()
    assert (due.status, due.phase) == ("running", "lead_sourcing")
    assert Job.objects.filter(campaign=due, job_type=JobType.FETCH_LEADS).exists()
    assert Campaign.objects.get(pk=later.pk).status == "scheduled"
    assert due.events.filter(action="campaign.running", actor_label="beat").exists()


def test_nothing_is_started_while_the_queue_is_paused(org):
    due = CampaignFactory(organization=org, status="scheduled", scheduled_at=timezone.now() - timedelta(minutes=1))
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    assert tasks.launch_scheduled_campaigns() == 0
    assert Campaign.objects.get(pk=due.pk).status == "scheduled"


def test_instantly_analytics_are_synced_into_the_campaigns_analytics_row(org):
    pushed = CampaignFactory(
        organization=org,
        channel="instantly",
        status="completed",
        completed_at=timezone.now(),
        instantly_campaign_id="c-1",
    )
    CampaignFactory(organization=org, channel="instantly", status="completed", completed_at=timezone.now())

    assert tasks.sync_instantly_analytics() == {"synced": 1, "errors": 0}
    assert tasks.sync_instantly_analytics() == {"synced": 1, "errors": 0}
    stored = InstantlyAnalytics.objects.get()
    assert stored.campaign_id == pushed.pk
    assert stored.figures["campaign_id"] == "c-1"
    assert stored.error == "" and stored.synced_at == stored.attempted_at
    assert not Job.objects.exists()  # no job row stands in for the figures


def test_no_analytics_call_is_made_while_the_queue_is_paused(org, monkeypatch):
    CampaignFactory(organization=org, status="running", instantly_campaign_id="c-1")
    QueueState.objects.filter(pk=1).update(state=QueueState.State.PAUSED)
    monkeypatch.setattr(InstantlySandbox, "campaign_analytics", lambda *a, **k: pytest.fail("called while paused"))
    assert tasks.sync_instantly_analytics()["synced"] == 0


def test_a_failing_analytics_call_is_counted_and_the_others_go_on(org, settings):
    settings.SANDBOX_FAIL = ["instantly"]
    CampaignFactory(organization=org, status="running", instantly_campaign_id="c-1")
    assert tasks.sync_instantly_analytics() == {"synced": 0, "errors": 1}
    stored = InstantlyAnalytics.objects.get()
    assert (stored.figures, stored.synced_at) == (None, None)
    assert "failure injected" in stored.error and stored.attempted_at is not None
