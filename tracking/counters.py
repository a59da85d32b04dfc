"""Campaign stats kept as counters, incremented in the transaction that records the fact.

Why counters and not aggregates at read time: with 1,000,000 recipients and 5,000,000 events, the
aggregate queries take far longer than the 50 ms stats budget (benchmarks/stats.py measures both),
while summing a few counter rows takes well under a millisecond. The events stay the log that
analytics buckets and audits read; the counters are the only stored form of the stats figures.
`counters_rebuild` recomputes them from the log, as a repair tool, never at read time.

Metric names:
- `recipients.<status>`: recipients that entered that status (sent, failed, bounced, ...).
- `event.<type>` and `event.<type>.human`: events recorded, all and without machine ones.
- `unique.<type>` and `unique.<type>.human`: recipients with at least one open / click.
- `step.<k>.sent`: messages of a sequence's step k sent (`recipients.sent` counts step 1 only).
"""

import random
from collections.abc import Mapping

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q

from .models import CampaignCounter, EmailEvent, Recipient, StepSend
from .states import EventType, RecipientStatus

# Concurrent increments of one campaign spread over this many rows per metric, so a burst of
# opens does not serialise on one row lock. Reads sum at most this many rows per metric.
COUNTER_SHARDS = 8

COUNTED_STATUSES = (
    RecipientStatus.SENT,
    RecipientStatus.FAILED,
    RecipientStatus.BOUNCED,
    RecipientStatus.UNSUBSCRIBED,
    RecipientStatus.COMPLAINED,
)
UNIQUE_EVENT_TYPES = (EventType.OPEN, EventType.CLICK)


def counters_add(*, campaign_id, metrics: Mapping[str, int]) -> None:
    """Add to a campaign's counters in one upsert statement, inside the caller's transaction.

    Raw SQL because the ORM cannot express `value = value + excluded.value` on conflict; the
    statement is the same on PostgreSQL and SQLite. Metrics are sorted so that two transactions
    touching the same rows lock them in the same order (no deadlock)."""
    items = sorted((metric, n) for metric, n in metrics.items() if n)
    if not items:
        return
    table = CampaignCounter._meta.db_table
    campaign_value = CampaignCounter._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, connection)
    shard = random.randrange(COUNTER_SHARDS)
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(items))
    params = [p for metric, n in items for p in (campaign_value, metric, shard, n)]
    # Only the model's table name and placeholders are formatted in; every value is a parameter.
    sql = (
        f"INSERT INTO {table} (campaign_id, metric, shard, value) VALUES {rows} "  # noqa: S608
        f"ON CONFLICT (campaign_id, metric, shard) DO UPDATE SET value = {table}.value + excluded.value"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def counters_read(*, campaign_id) -> dict[str, int]:
    """Every counter of a campaign: one indexed query over at most metrics × shards rows."""
    rows = CampaignCounter.objects.filter(campaign_id=campaign_id).values_list("metric", "value")
    totals: dict[str, int] = {}
    for metric, value in rows:
        totals[metric] = totals.get(metric, 0) + value
    return totals


def counters_derive(*, campaign_id) -> dict[str, int]:
    """The counters recomputed from recipients and events (slow on big campaigns: repair only)."""
    recipients = Recipient.objects.filter(campaign_id=campaign_id)
    unsubscribe_events = EmailEvent.objects.filter(recipient=OuterRef("pk"), type=EventType.UNSUBSCRIBE)
    facts = recipients.aggregate(
        sent=Count("id", filter=Q(sent_at__isnull=False)),
        failed=Count("id", filter=Q(status=RecipientStatus.FAILED)),
        bounced=Count("id", filter=Q(status=RecipientStatus.BOUNCED)),
        complained=Count("id", filter=Q(status=RecipientStatus.COMPLAINED)),
        # A complaint can follow an unsubscribe; the unsubscribe was still counted when it happened.
        unsubscribed=Count(
            "id",
            filter=Q(status=RecipientStatus.UNSUBSCRIBED)
            | Q(Exists(unsubscribe_events), status=RecipientStatus.COMPLAINED),
        ),
        unique_open=Count("id", filter=Q(first_opened_at__isnull=False)),
        unique_open_human=Count("id", filter=Q(first_human_opened_at__isnull=False)),
        unique_click=Count("id", filter=Q(first_clicked_at__isnull=False)),
        unique_click_human=Count("id", filter=Q(first_human_clicked_at__isnull=False)),
    )
    metrics = {f"recipients.{status}": facts[status] for status in COUNTED_STATUSES}
    for kind in UNIQUE_EVENT_TYPES:
        metrics[f"unique.{kind}"] = facts[f"unique_{kind}"]
        metrics[f"unique.{kind}.human"] = facts[f"unique_{kind}_human"]
    by_type = EmailEvent.objects.filter(campaign_id=campaign_id).values("type", "is_machine").annotate(n=Count("id"))
    for row in by_type:
        key = f"event.{row['type']}"
        metrics[key] = metrics.get(key, 0) + row["n"]
        if not row["is_machine"]:
            metrics[f"{key}.human"] = metrics.get(f"{key}.human", 0) + row["n"]
    steps = StepSend.objects.filter(campaign_id=campaign_id).values_list("step").annotate(n=Count("id"))
    metrics.update({f"step.{step}.sent": n for step, n in steps})  # a sequence's sends, per step
    return {metric: n for metric, n in metrics.items() if n}


def counters_rebuild(*, campaign_id) -> dict[str, int]:
    """Replace a campaign's counters by the figures derived from its recipients and events.

    A repair tool (and the benchmark's loader): run it while the campaign receives no events, since
    an increment committed between the derive and the write would be lost."""
    with transaction.atomic():
        metrics = counters_derive(campaign_id=campaign_id)
        CampaignCounter.objects.filter(campaign_id=campaign_id).delete()
        CampaignCounter.objects.bulk_create(
            [CampaignCounter(campaign_id=campaign_id, metric=m, shard=0, value=n) for m, n in metrics.items()]
        )
    return metrics
