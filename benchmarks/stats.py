"""Campaign stats on 1,000,000 recipients and 5,000,000 events: target under 50 ms.

    .venv/bin/python benchmarks/stats.py [--reload]

Loads one campaign into a dedicated PostgreSQL database (BENCH_STATS_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bench_stats) with INSERT ... SELECT generate_series, once: a
later run reuses the data unless --reload. Then it times, median of several runs:
- `campaign_stats` as served (the counters, one indexed query);
- the same figures derived from recipients and events at read time (`counters_derive`, the plain
  conditional aggregates), to show why the stats are kept as counters;
and checks that both give the same figures.
"""

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get("BENCH_STATS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_stats")
RECIPIENTS = int(os.environ.get("BENCH_RECIPIENTS", "1000000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "5000000"))
RUNS = int(os.environ.get("BENCH_RUNS", "15"))
TARGET_MS = 50

os.environ["DATABASE_URL"] = DATABASE_URL
# DEBUG off: Django would otherwise record every query, which is not how production runs.
os.environ["DEBUG"] = "false"
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def load(campaign) -> None:
    """Recipients and events generated in SQL. Events cycle over the recipients with a fixed mix
    of types, a machine flag on every 7th, and times spread over the last 30 days."""
    from django.db import connection

    print(f"loading {RECIPIENTS:,} recipients and {EVENTS:,} events ...", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        # The rows are generated consistent with each other, so the foreign-key triggers can be
        # skipped during the load (a superuser setting, for this session only).
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            """
            INSERT INTO tracking_recipient (campaign_id, email, status, token, message_id, claimed_at, sent_at,
                first_opened_at, first_human_opened_at, first_clicked_at, first_human_clicked_at,
                last_error, created_at)
            SELECT %(campaign)s, 'r' || i || '@example.org',
                CASE WHEN i %% 50 = 0 THEN 'bounced' WHEN i %% 97 = 0 THEN 'unsubscribed' ELSE 'sent' END,
                'bench-' || i || '-' || md5(i::text), '<' || i || '@bench>', now(), now() - interval '30 days',
                CASE WHEN i %% 5 < 3 THEN now() END, CASE WHEN i %% 5 < 2 THEN now() END,
                CASE WHEN i %% 5 = 0 THEN now() END, CASE WHEN i %% 10 = 0 THEN now() END,
                '', now()
            FROM generate_series(1, %(n)s) AS i
            """,
            {"campaign": campaign.pk, "n": RECIPIENTS},
        )
        cursor.execute("SELECT min(id) FROM tracking_recipient WHERE campaign_id = %s", [campaign.pk])
        first_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO tracking_link (campaign_id, url, created_at) "
            "SELECT %s, 'https://example.com/page/' || i, now() FROM generate_series(1, 5) AS i",
            [campaign.pk],
        )
        cursor.execute("SELECT min(id) FROM tracking_link WHERE campaign_id = %s", [campaign.pk])
        first_link = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO tracking_emailevent (recipient_id, campaign_id, type, occurred_at, link_id, user_agent,
                ip, is_machine, source, provider_event_id, payload)
            SELECT %(first)s + (i %% %(recipients)s), %(campaign)s, t.type,
                now() - (i %% 720) * interval '1 hour',
                CASE WHEN t.type = 'click' THEN %(link)s + (i %% 5) END,
                'Mozilla/5.0', '127.0.0.1', i %% 7 = 0, 'tracking', NULL, '{}'::jsonb
            FROM generate_series(1, %(n)s) AS i
            CROSS JOIN LATERAL (SELECT CASE
                WHEN i %% 100 < 60 THEN 'open' WHEN i %% 100 < 85 THEN 'click' WHEN i %% 100 < 92 THEN 'delivered'
                WHEN i %% 100 < 95 THEN 'reply' WHEN i %% 100 < 97 THEN 'bounce' WHEN i %% 100 < 99 THEN 'unsubscribe'
                ELSE 'complain' END AS type) AS t
            """,
            {"first": first_id, "recipients": RECIPIENTS, "campaign": campaign.pk, "link": first_link, "n": EVENTS},
        )
        cursor.execute("SET session_replication_role = origin")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tracking_recipient")
        cursor.execute("VACUUM ANALYZE tracking_emailevent")
    print(f"loaded in {time.perf_counter() - started:.1f} s", flush=True)


def timed(fn, runs: int) -> tuple[float, object]:
    fn()  # warm the cache
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def main() -> int:
    ensure_database(DATABASE_URL)
    import django

    django.setup()
    from django.core.management import call_command

    from campaigns.models import Campaign, Organization
    from tracking.counters import counters_derive, counters_read, counters_rebuild
    from tracking.models import EmailEvent, Recipient
    from tracking.selectors import campaign_stats

    call_command("migrate", verbosity=0)
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    campaign = Campaign.objects.filter(organization=org, name="stats benchmark").first()
    if campaign is not None and "--reload" in sys.argv:
        campaign.delete()
        campaign = None
    if campaign is None:
        campaign = Campaign.objects.create(organization=org, name="stats benchmark", status="completed")
        load(campaign)
        counters_rebuild(campaign_id=campaign.pk)

    recipients = Recipient.objects.filter(campaign=campaign).count()
    events = EmailEvent.objects.filter(campaign=campaign).count()
    print(f"campaign {campaign.pk}: {recipients:,} recipients, {events:,} events")

    served_ms, stats = timed(lambda: campaign_stats(campaign=campaign), RUNS)
    derived_ms, derived = timed(lambda: counters_derive(campaign_id=campaign.pk), max(3, RUNS // 5))
    same = derived == counters_read(campaign_id=campaign.pk)

    print(f"campaign_stats (counters):         median {served_ms:8.2f} ms over {RUNS} runs (target < {TARGET_MS} ms)")
    print(f"same figures derived at read time: median {derived_ms:8.2f} ms (plain conditional aggregates)")
    print(f"counters == derived: {same}")
    print(f"sent {stats['sent']:,}  opens {stats['opens']}  clicks {stats['clicks']}")
    ok = served_ms < TARGET_MS and same
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
