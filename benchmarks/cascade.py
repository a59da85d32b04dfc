"""Queue pause and resume at scale: 1,000 running campaigns with 1,000,000 jobs, then 100 with
100,000, timing each cascade and counting its SQL statements.

    createdb -h 127.0.0.1 -U postgres bench_cascade
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_cascade .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_cascade .venv/bin/python benchmarks/cascade.py

It empties the campaign tables of that database, so it refuses any database whose name does not
start with "bench". Redis keys go under REDIS_KEY_PREFIX (default here "cbo-bench:") and are
deleted at the end. Celery is not involved: the per-campaign wake-up messages a resume sends after
commit are counted, not sent.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")
os.environ.setdefault("TESTING", "true")  # no SECRET_KEY needed; nothing is served
os.environ.setdefault("REDIS_KEY_PREFIX", "cbo-bench:")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from campaigns import pausing  # noqa: E402
from campaigns.models import Campaign, CampaignEvent, Job, Organization  # noqa: E402
from campaigns_project.redis import get_redis  # noqa: E402
from queue_control import breakers  # noqa: E402
from queue_control.models import QueueEvent, QueueState  # noqa: E402
from queue_control.services import queue_pause, queue_resume  # noqa: E402

TABLES = [CampaignEvent, Job, Campaign, QueueEvent]


def empty_tables() -> None:
    names = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in TABLES)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {names} CASCADE")


def clear_redis() -> None:
    r = get_redis()
    keys = list(r.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000))
    if keys:
        r.delete(*keys)


def columns(model, *skip: str) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if f.column not in skip]


def populate(n_campaigns: int, n_jobs: int) -> float:
    """Copy one template campaign and one template job with INSERT … SELECT generate_series."""
    started = time.perf_counter()
    qn = connection.ops.quote_name
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    template = Campaign.objects.create(organization=org, name="template", status="running")
    template_job = Job.objects.create(campaign=template, job_type="verify_email", status="pending")
    campaign_cols = columns(Campaign, "id", "name")
    job_cols = columns(Job, "id", "campaign_id", "status")
    per_campaign = n_jobs // n_campaigns
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(Campaign._meta.db_table)} (id, name, {', '.join(map(qn, campaign_cols))}) "  # noqa: S608
            f"SELECT gen_random_uuid(), 'Bench ' || g, {', '.join('t.' + qn(c) for c in campaign_cols)} "
            f"FROM {qn(Campaign._meta.db_table)} t, generate_series(1, %s) g WHERE t.id = %s",
            [n_campaigns, template.pk],
        )
        cursor.execute(
            f"INSERT INTO {qn(Job._meta.db_table)} (campaign_id, status, {', '.join(map(qn, job_cols))}) "  # noqa: S608
            f"SELECT c.id, CASE WHEN g %% 10 = 0 THEN 'processing' ELSE 'pending' END, "
            f"{', '.join('t.' + qn(c) for c in job_cols)} "
            f"FROM {qn(Campaign._meta.db_table)} c CROSS JOIN generate_series(1, %s) g "
            f"CROSS JOIN {qn(Job._meta.db_table)} t WHERE t.id = %s AND c.id <> %s",
            [per_campaign, template_job.pk, template.pk],
        )
        template.delete()  # and its job
    settle()
    return time.perf_counter() - started


def settle() -> None:
    """What autovacuum and the checkpointer would have done in the minutes between a bulk write
    and the next cascade: vacuum (hint bits, statistics) and flush. Not timed; the WAL that a
    cascade writes itself is in its figure."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {qn(Campaign._meta.db_table)}, {qn(Job._meta.db_table)}")
        cursor.execute("CHECKPOINT")


def measure(n_campaigns: int, n_jobs: int, rounds: int) -> dict:
    """Populate once, then pause and resume `rounds` times; the median and worst of each."""
    empty_tables()
    clear_redis()
    QueueState.objects.update_or_create(pk=1, defaults={"state": "active", "reason": ""})
    for service in settings.SERVICES:
        breakers.breaker_close(service)
    populate_s = populate(n_campaigns, n_jobs)
    kicked: list = []
    pausing.campaigns_kick = kicked.extend  # count the after-commit wake-ups instead of sending them
    pauses, resumes = [], []
    for _ in range(rounds):
        settle()
        with CaptureQueriesContext(connection) as paused:
            started = time.perf_counter()
            queue_pause(service="apollo")
            pauses.append(time.perf_counter() - started)
        assert Campaign.objects.filter(status="paused").count() == n_campaigns
        assert Job.objects.filter(status="paused").count() == n_jobs

        settle()
        kicked.clear()
        with CaptureQueriesContext(connection) as resumed:
            started = time.perf_counter()
            queue_resume(actor=None, actor_label="benchmark")
            resumes.append(time.perf_counter() - started)
        assert Campaign.objects.filter(status="running").count() == n_campaigns
        assert Job.objects.filter(status="pending").count() == n_jobs
        assert len(kicked) == n_campaigns

    return {
        "campaigns": n_campaigns,
        "jobs": n_jobs,
        "populate_s": populate_s,
        "pause_s": statistics.median(pauses),
        "pause_max_s": max(pauses),
        "pause_sql": len(paused.captured_queries),
        "resume_s": statistics.median(resumes),
        "resume_max_s": max(resumes),
        "resume_sql": len(resumed.captured_queries),
        "kicks": len(kicked),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="Leave the rows and Redis keys in place.")
    parser.add_argument("--rounds", type=int, default=3, help="Pause/resume rounds per size (default 3).")
    args = parser.parse_args()
    db = settings.DATABASES["default"]
    if connection.vendor != "postgresql" or not str(db["NAME"]).startswith("bench"):
        print(f"Refusing: needs PostgreSQL and a database named bench* (got {connection.vendor} {db['NAME']!r}).")
        return 2

    rows = [measure(1_000, 1_000_000, args.rounds), measure(100, 100_000, args.rounds)]
    print(f"\nQueue cascade on PostgreSQL {connection.pg_version // 10000} ({db['NAME']}), {args.rounds} rounds\n")
    header = (
        f"{'campaigns':>9} {'jobs':>9} | {'pause s':>7} {'worst':>6} {'stmts':>5} | "
        f"{'resume s':>8} {'worst':>6} {'stmts':>5} | {'kicks':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['campaigns']:>9,} {r['jobs']:>9,} | {r['pause_s']:>7.2f} {r['pause_max_s']:>6.2f} "
            f"{r['pause_sql']:>5} | {r['resume_s']:>8.2f} {r['resume_max_s']:>6.2f} {r['resume_sql']:>5} | "
            f"{r['kicks']:>5}"
        )
    print("\nMedian of the rounds, then the worst; each round starts after a vacuum and a checkpoint.")
    print(f"Populating 1,000 campaigns / 1,000,000 jobs took {rows[0]['populate_s']:.1f} s.")
    same = rows[0]["pause_sql"] == rows[1]["pause_sql"] and rows[0]["resume_sql"] == rows[1]["resume_sql"]
    print("Statement count independent of row count:", "yes" if same else "NO")
    if not args.keep:
        empty_tables()
        clear_redis()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
