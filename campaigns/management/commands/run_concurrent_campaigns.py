"""The concurrent campaigns smoke run: N campaigns of M leads on the sandbox providers, polled to the end.

Exit codes: 0 every campaign completed; 1 timeout, a failed campaign or an error; 2 pre-flight
refused (queue paused or a breaker open); 3 a breaker paused the queue during the run (the
report says which campaigns and jobs it caught — a pause is the safety net working, not a crash).
"""

import json
import sys
import time
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Campaign, Job, Organization
from campaigns.services import campaign_create, campaign_start
from campaigns.states import CAMPAIGN_FINAL_STATUSES, CampaignStatus, JobStatus
from queue_control.selectors import breakers_status, open_breakers, queue_status

SEARCH_URL = "https://app.apollo.io/#/people?personTitles[]=head%20of%20growth&personLocations[]=smoke-{n}"
# A new smoke organization's footer address (sandbox sends only; a named organization keeps its own).
SMOKE_POSTAL_ADDRESS = "Smoke run, 1 Example Street, 10115 Berlin, Germany"
EXIT_OK, EXIT_FAILED, EXIT_PREFLIGHT, EXIT_PAUSED = 0, 1, 2, 3


class Command(BaseCommand):
    help = "Create and start N campaigns of M leads on the sandbox, poll until done, print a report."

    def add_arguments(self, parser):
        parser.add_argument("--campaigns", type=int, default=10)
        parser.add_argument("--leads", type=int, default=20)
        parser.add_argument("--poll", type=float, default=2.0, help="Seconds between status lines.")
        parser.add_argument("--timeout", type=float, default=300.0, help="Give up after this many seconds.")
        parser.add_argument("--settle", type=float, default=3.0, help="Seconds to let a pause settle.")
        parser.add_argument("--json", dest="json_path", default="", help="Also write the report as JSON here.")
        parser.add_argument("--organization", default="smoke", help="Slug of the organization to use.")

    def handle(self, *args, campaigns, leads, poll, timeout, settle, json_path, organization, **options):
        if campaigns < 1 or leads < 1 or leads > settings.CAMPAIGN_MAX_LEAD_COUNT:
            raise CommandError(f"--campaigns must be >= 1 and --leads 1..{settings.CAMPAIGN_MAX_LEAD_COUNT}.")
        blockers = open_breakers()
        status = queue_status()
        if blockers or status["state"] != "active":
            why = f"breakers open: {', '.join(blockers)}" if blockers else f"queue is {status['state']}"
            self.stderr.write(f"Pre-flight failed: {why} ({status.get('reason') or 'no reason'}). Nothing started.")
            sys.exit(EXIT_PREFLIGHT)
        self.stdout.write(f"Pre-flight ok: queue active, all {len(status['breakers'])} breakers closed.")

        org, _ = Organization.objects.get_or_create(
            slug=organization, defaults={"name": "Smoke run", "postal_address": SMOKE_POSTAL_ADDRESS}
        )
        run_started = timezone.now()
        ids = []
        for n in range(campaigns):  # each start is its own transaction, as an operator's would be
            campaign = campaign_create(
                organization=org,
                name=f"Smoke {run_started:%H%M%S} #{n + 1}",
                search_url=SEARCH_URL.format(n=n + 1),
                lead_count=leads,
                from_name="Smoke",
                from_email="smoke@example.com",
                subject_template="Hello {{ first_name }}",
                body_template="Hi {{ first_name }}, https://example.com/smoke",
                send_rate_per_minute=6000,
            )
            campaign_start(campaign_id=campaign.pk, actor_label="smoke-run")
            ids.append(campaign.pk)
        self.stdout.write(f"Started {campaigns} campaigns of {leads} leads.")

        deadline = time.monotonic() + timeout
        outcome = None
        while outcome is None:
            time.sleep(poll)
            line, by_status, queue = self._progress(ids)
            self.stdout.write(line)
            if queue["state"] == "paused":
                time.sleep(settle)  # let in-flight workers finish their conditional writes
                outcome = EXIT_PAUSED
            elif sum(by_status[s] for s in CAMPAIGN_FINAL_STATUSES) == len(ids):
                outcome = EXIT_OK if by_status[CampaignStatus.COMPLETED] == len(ids) else EXIT_FAILED
            elif time.monotonic() > deadline:
                self.stderr.write(f"Timed out after {timeout:.0f}s.")
                outcome = EXIT_FAILED

        report = self._report(ids, run_started, outcome)
        self.stdout.write(self._format(report))
        if json_path:
            with open(json_path, "w") as fh:
                json.dump(report, fh, indent=2, default=str)
            self.stdout.write(f"JSON report written to {json_path}")
        if outcome != EXIT_OK:
            sys.exit(outcome)
        return None

    def _progress(self, ids):
        by_status = Counter(dict(Campaign.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("pk"))))
        jobs = Counter(dict(Job.objects.filter(campaign_id__in=ids).values_list("status").annotate(n=Count("pk"))))
        queue = queue_status()
        opened = [b["service"] for b in queue["breakers"] if b["state"] != "closed"]
        line = (
            f"[{timezone.now():%H:%M:%S}] campaigns {dict(by_status)} | jobs {dict(jobs)} | "
            f"queue {queue['state']}{' (' + queue['reason'] + ')' if queue.get('reason') else ''} | "
            f"breakers open: {', '.join(opened) or 'none'}"
        )
        return line, by_status, queue

    def _report(self, ids, run_started, outcome) -> dict:
        now = timezone.now()
        rows = (
            Campaign.objects.filter(pk__in=ids)
            .annotate(
                leads_total=Count("leads", distinct=True),
                jobs_total=Count("jobs", distinct=True),
                jobs_completed=Count("jobs", filter=Q(jobs__status=JobStatus.COMPLETED), distinct=True),
                jobs_paused=Count("jobs", filter=Q(jobs__status=JobStatus.PAUSED), distinct=True),
            )
            .order_by("name")
        )
        campaigns: list[dict[str, Any]] = []
        for c in rows:
            end = c.completed_at or c.failed_at or c.cancelled_at or now
            campaigns.append(
                {
                    "id": str(c.pk),
                    "name": c.name,
                    "status": c.status,
                    "phase": c.phase,
                    "pause_reason": c.pause_cause,
                    "status_error": c.status_error,
                    "leads": c.leads_total,
                    "jobs": c.jobs_total,
                    "jobs_completed": c.jobs_completed,
                    "jobs_paused": c.jobs_paused,
                    "duration_s": round((end - (c.started_at or run_started)).total_seconds(), 2),
                }
            )
        elapsed = (now - run_started).total_seconds()
        jobs_completed = sum(c["jobs_completed"] for c in campaigns)
        queue = queue_status()
        return {
            "outcome": {EXIT_OK: "completed", EXIT_FAILED: "failed", EXIT_PAUSED: "paused"}[outcome],
            "exit_code": outcome,
            "elapsed_s": round(elapsed, 2),
            "campaigns": campaigns,
            "totals": {
                "campaigns": len(campaigns),
                "by_status": dict(Counter(c["status"] for c in campaigns)),
                "leads": sum(c["leads"] for c in campaigns),
                "jobs": sum(c["jobs"] for c in campaigns),
                "jobs_completed": jobs_completed,
                "jobs_per_second": round(jobs_completed / elapsed, 2) if elapsed else 0.0,
            },
            "pause": {
                "queue_state": queue["state"],
                "reason": queue.get("reason", ""),
                "campaigns": [c["name"] for c in campaigns if c["status"] == CampaignStatus.PAUSED],
                "jobs_paused": sum(c["jobs_paused"] for c in campaigns),
            },
            "breakers": breakers_status(),
        }

    def _format(self, report: dict) -> str:
        lines = [
            "",
            "=== Concurrent campaigns report ===",
            f"Outcome: {report['outcome']} in {report['elapsed_s']}s",
            "",
        ]
        lines.append(f"{'campaign':<24} {'status':<10} {'phase':<14} {'leads':>5} {'jobs':>5} {'secs':>7}")
        for c in report["campaigns"]:
            lines.append(
                f"{c['name'][:24]:<24} {c['status']:<10} {c['phase']:<14} {c['leads']:>5} {c['jobs']:>5} "
                f"{c['duration_s']:>7}"
                + (f"  paused: {c['pause_reason']}" if c["pause_reason"] else "")
                + (f"  error: {c['status_error']}" if c["status_error"] else "")
            )
        t = report["totals"]
        lines += [
            "",
            f"Totals: {t['campaigns']} campaigns {t['by_status']}, {t['leads']} leads, {t['jobs']} jobs "
            f"({t['jobs_completed']} completed), {t['jobs_per_second']} jobs/s",
        ]
        pause = report["pause"]
        if pause["queue_state"] == "paused" or pause["campaigns"]:
            lines.append(
                f"Pause: queue {pause['queue_state']} ({pause['reason'] or 'no reason'}); "
                f"{len(pause['campaigns'])} campaigns and {pause['jobs_paused']} jobs paused"
            )
        lines.append(
            "Breakers: " + ", ".join(f"{b['service']}={b['state']}({b['failures']})" for b in report["breakers"])
        )
        return "\n".join(lines)
