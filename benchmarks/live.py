"""Coalescing of live progress: batch outcomes in, campaign.progress messages out.

    .venv/bin/python benchmarks/live.py     # database bench_live, Redis keys cbo-bench-live:*

CAMPAIGNS running campaigns; WRITERS threads record batch outcomes (phase_items_add, each in its
own transaction, as workers do) as fast as they can for SECONDS; the publisher (live_publish, the
beat task) ticks every second meanwhile, and a listener joined to every campaign's group counts
what reaches the WebSocket's channel layer. Prints outcomes per second, messages per second and
per campaign per second, and what one tick costs.
"""

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_live")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("REDIS_KEY_PREFIX", "cbo-bench-live:")
os.environ.setdefault("LOG_LEVEL", "WARNING")

CAMPAIGNS = int(os.environ.get("BENCH_CAMPAIGNS", "20"))
WRITERS = int(os.environ.get("BENCH_WRITERS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    ensure_database()
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Campaign, CampaignPhase, Organization
    from campaigns.pipeline import phase_items_add
    from tracking.live import campaign_group, live_publish

    call_command("migrate", verbosity=0)
    org, _ = Organization.objects.get_or_create(slug="bench-live", defaults={"name": "Bench live"})
    Campaign.objects.filter(organization=org).delete()
    now = timezone.now()
    campaigns = [
        Campaign.objects.create(organization=org, name=f"live {i}", status="running", phase="verification")
        for i in range(CAMPAIGNS)
    ]
    for campaign in campaigns:
        CampaignPhase.objects.create(
            campaign=campaign, phase="verification", jobs_total=1, items_total=10**9, started_at=now, updated_at=now
        )
    layer = get_channel_layer()
    channel = "bench-live-listener"
    for campaign in campaigns:
        async_to_sync(layer.group_add)(campaign_group(campaign.pk), channel)

    stop = threading.Event()
    outcomes = [0] * WRITERS

    def writer(index: int) -> None:
        ids = [c.pk for c in campaigns]
        n = 0
        while not stop.is_set():
            with transaction.atomic():
                phase_items_add(campaign_id=ids[n % len(ids)], phase="verification", done=10, passed=9)
            n += 1
        outcomes[index] = n
        connection.close()

    received = [0]

    async def listen() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(layer.receive(channel), 0.5)
                received[0] += 1
            except TimeoutError:
                pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    listener = threading.Thread(target=lambda: asyncio.run(listen()))
    listener.start()
    for thread in threads:
        thread.start()
    ticks, tick_seconds, started = 0, [], time.monotonic()
    while time.monotonic() - started < SECONDS:
        before = time.monotonic()
        live_publish()
        tick_seconds.append(time.monotonic() - before)
        ticks += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - before)))
    stop.set()
    for thread in threads:
        thread.join()
    live_publish()
    time.sleep(1)
    listener.join()
    elapsed = time.monotonic() - started
    total = sum(outcomes)
    print(f"{CAMPAIGNS} campaigns, {WRITERS} writer threads, {elapsed:.1f} s, {ticks} publisher ticks")
    print(f"batch outcomes recorded: {total} ({total / elapsed:.0f}/s)")
    print(
        f"campaign.progress messages received: {received[0]} ({received[0] / elapsed:.1f}/s, "
        f"{received[0] / elapsed / CAMPAIGNS:.2f} per campaign per second)"
    )
    print(f"outcomes per message: {total / max(received[0], 1):.0f}")
    tick_seconds.sort()
    print(
        f"a tick: median {tick_seconds[len(tick_seconds) // 2] * 1000:.1f} ms, worst {tick_seconds[-1] * 1000:.1f} ms"
    )
    Campaign.objects.filter(organization=org).delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
