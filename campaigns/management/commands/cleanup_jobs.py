import argparse
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from campaigns.jobs import jobs_cleanup
from campaigns.models import Campaign


def _days(value: str) -> int:
    # argparse turns ArgumentTypeError into a usage error (exit 2 from the command line,
    # CommandError from call_command); any other exception here would be a traceback.
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {value!r}")
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {days}")
    return days


class Command(BaseCommand):
    help = (
        "Delete final jobs (completed, failed, cancelled) last changed more than --days days ago. "
        "Pending, processing and paused jobs are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=_days,
            default=settings.JOB_RETENTION_DAYS,
            help=f"Age in days (default JOB_RETENTION_DAYS = {settings.JOB_RETENTION_DAYS}).",
        )
        parser.add_argument("--campaign", help="Only this campaign's jobs (its UUID).")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")

    def handle(self, *args, days=None, campaign=None, dry_run=False, **options) -> str:
        try:
            days = settings.JOB_RETENTION_DAYS if days is None else _days(str(days))
        except argparse.ArgumentTypeError as exc:
            raise CommandError(f"--days {exc}.")
        campaign_id = None
        if campaign:
            try:
                campaign_id = uuid.UUID(str(campaign))
            except ValueError:
                raise CommandError(f"--campaign must be a campaign UUID, got {campaign!r}.")
            if not Campaign.objects.filter(pk=campaign_id).exists():
                raise CommandError(f"No campaign with id {campaign_id}.")
        result = jobs_cleanup(older_than_days=days, campaign_id=campaign_id, dry_run=dry_run)
        scope = f" of campaign {campaign_id}" if campaign_id else ""
        detail = ", ".join(f"{count} {status}" for status, count in sorted(result["by_status"].items())) or "none"
        if dry_run:
            return f"Dry run: would delete {result['matched']} final jobs{scope} older than {days} days ({detail})."
        return f"Deleted {result['deleted']} final jobs{scope} older than {days} days ({detail})."
