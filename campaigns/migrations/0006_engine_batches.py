"""The engine of wave 2: a job covers a batch (a range of lead ids, or recipients claimed when it
runs), each phase counts its jobs and items in CampaignPhase, and the sweeper replaces the reaper.

Active jobs of the old shape (one per lead) cannot be resumed as batches: they are cancelled
first, and the campaigns they belonged to are failed with a message saying why (a product not yet
deployed has none; a development database may).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

OLD_REAPER = "campaigns: reap stuck jobs"
SWEEPER = "campaigns: sweep"
SWEEPER_TASK = "campaigns.tasks.sweep"
EVERY_20_SECONDS = {"every": 20, "period": "seconds"}


def retire_per_lead_jobs(apps, schema_editor):
    Job = apps.get_model("campaigns", "Job")
    Campaign = apps.get_model("campaigns", "Campaign")
    now = timezone.now()
    old = Job.objects.filter(finished_at__isnull=True, lead__isnull=False)
    campaign_ids = set(old.values_list("campaign_id", flat=True))
    old.update(status="cancelled", finished_at=now, updated_at=now)
    Campaign.objects.filter(pk__in=campaign_ids, status__in=("running", "paused")).update(
        status="failed",
        failed_at=now,
        status_message="Failed: the job engine was upgraded while it ran.",
        status_error="Its per-lead jobs cannot be resumed by the batch engine; start a new campaign.",
    )


def sweeper_replaces_reaper(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTask.objects.filter(name=OLD_REAPER).delete()
    interval = IntervalSchedule.objects.filter(**EVERY_20_SECONDS).first() or IntervalSchedule.objects.create(
        **EVERY_20_SECONDS
    )
    PeriodicTask.objects.get_or_create(
        name=SWEEPER,
        defaults={
            "task": SWEEPER_TASK,
            "interval": interval,
            "expire_seconds": 15,
            "description": "Takes back jobs of lost workers, moves stalled campaigns on, wakes stranded work.",
        },
    )
    # What PeriodicTasks.update_changed() does: tell a running beat that the schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0005_job_hot_pause'),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(retire_per_lead_jobs, migrations.RunPython.noop),
        migrations.RunPython(sweeper_replaces_reaper, migrations.RunPython.noop),
        migrations.CreateModel(
            name='CampaignPhase',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('phase', models.CharField(choices=[('lead_sourcing', 'Lead Sourcing'), ('verification', 'Verification'), ('enrichment', 'Enrichment'), ('outreach', 'Outreach'), ('done', 'Done')], max_length=16)),
                ('jobs_total', models.PositiveIntegerField(default=0)),
                ('jobs_finished', models.PositiveIntegerField(default=0)),
                ('items_total', models.PositiveBigIntegerField(default=0)),
                ('items_done', models.PositiveBigIntegerField(default=0)),
                ('items_passed', models.PositiveBigIntegerField(default=0)),
                ('items_failed', models.PositiveBigIntegerField(default=0)),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['campaign', 'started_at', 'id'],
            },
        ),
        migrations.RemoveConstraint(
            model_name='job',
            name='job_one_per_lead_and_type',
        ),
        migrations.RemoveField(
            model_name='campaign',
            name='progress',
        ),
        migrations.RemoveField(
            model_name='job',
            name='lead',
        ),
        migrations.AddField(
            model_name='job',
            name='range_end',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='range_start',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='run_after',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='job',
            name='size',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name='job',
            name='job_type',
            field=models.CharField(choices=[('fetch_leads', 'Fetch Leads'), ('verify_email', 'Verify Email'), ('enrich_lead', 'Enrich Lead'), ('send_email', 'Send Email'), ('push_instantly', 'Push Instantly'), ('sync_analytics', 'Sync Analytics')], max_length=32),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(condition=models.Q(('range_start__isnull', False)), fields=('campaign', 'job_type', 'range_start'), name='job_one_per_batch'),
        ),
        migrations.AddField(
            model_name='campaignphase',
            name='campaign',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='phases', to='campaigns.campaign'),
        ),
        migrations.AddConstraint(
            model_name='campaignphase',
            constraint=models.UniqueConstraint(fields=('campaign', 'phase'), name='campaignphase_unique'),
        ),
    ]
