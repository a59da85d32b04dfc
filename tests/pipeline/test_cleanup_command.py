"""manage.py cleanup_jobs --days N [--campaign ID] [--dry-run]."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.management.commands.cleanup_jobs import Command
from campaigns.models import Job
from tests.factories import CampaignFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(org):
    return CampaignFactory(organization=org)


ROOT = Path(__file__).resolve().parent.parent.parent


def old_job(campaign, status, days=40):
    job = JobFactory(campaign=campaign, status=status)
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(days=days))
    return job


def test_it_deletes_old_final_jobs_and_says_how_many(campaign):
    old_job(campaign, "completed")
    old_job(campaign, "failed")
    kept = [old_job(campaign, "pending"), old_job(campaign, "completed", days=3)]

    summary = Command().handle(days=30)
    assert summary == "Deleted 2 final jobs older than 30 days (1 completed, 1 failed)."
    assert set(Job.objects.values_list("pk", flat=True)) == {job.pk for job in kept}


def test_it_never_deletes_an_active_job(campaign):
    active = [old_job(campaign, status, days=400) for status in ("pending", "processing", "paused")]
    assert call_command("cleanup_jobs", "--days", "0") == "Deleted 0 final jobs older than 0 days (none)."
    assert Job.objects.filter(pk__in=[job.pk for job in active]).count() == 3


def test_a_dry_run_deletes_nothing(campaign):
    old_job(campaign, "cancelled")
    summary = call_command("cleanup_jobs", "--days", "30", "--dry-run")
    assert summary == "Dry run: would delete 1 final jobs older than 30 days (1 cancelled)."
    assert Job.objects.count() == 1


def test_it_can_be_limited_to_one_campaign(campaign, org):
    old_job(campaign, "completed")
    other = old_job(CampaignFactory(organization=org), "completed")
    summary = call_command("cleanup_jobs", "--days", "30", "--campaign", str(campaign.pk))
    assert summary == f"Deleted 1 final jobs of campaign {campaign.pk} older than 30 days (1 completed)."
    assert list(Job.objects.values_list("pk", flat=True)) == [other.pk]


def test_an_unknown_campaign_is_refused_clearly(campaign):
    missing = uuid.uuid4()
    with pytest.raises(CommandError, match=f"No campaign with id {missing}"):
        call_command("cleanup_jobs", "--days", "30", "--campaign", str(missing))


def test_a_malformed_campaign_id_is_refused_clearly(campaign):
    with pytest.raises(CommandError, match="--campaign must be a campaign UUID, got 'nope'"):
        call_command("cleanup_jobs", "--campaign", "nope")


@pytest.mark.parametrize(("days", "why"), [("-1", "must be 0 or more, got -1"), ("soon", "must be a whole number")])
def test_bad_days_are_refused(days, why):
    with pytest.raises(CommandError, match=f"argument --days: {why}"):
        call_command("cleanup_jobs", "--days", days)


def test_bad_days_from_the_command_line_are_a_usage_error_not_a_traceback():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "campaigns_project.test_settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "cleanup_jobs", "--days", "-1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cleanup_jobs: error: argument --days: must be 0 or more, got -1" in result.stderr
    assert "Traceback" not in result.stderr
