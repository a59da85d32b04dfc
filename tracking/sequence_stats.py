"""Reads of the sequence: per-variant figures with a significance test, and a recipient's
timeline (steps sent, what it did, whether and why it stopped)."""

import math
from typing import Any

from django.db import connection

from .models import EmailEvent, Recipient
from .models_sequences import SequenceStep, StepSend, StepVariant

# An event belongs to the latest step sent before it: the tracking token is the recipient's, not
# the step's, so an open after step 2 went out is counted for step 2.
_VARIANT_STATS_SQL = """
WITH s AS (
    SELECT recipient_id, step, variant, sent_at,
           LEAD(sent_at) OVER (PARTITION BY recipient_id ORDER BY step) AS until
    FROM {step_send} WHERE campaign_id = %s
)
SELECT s.step, s.variant, COUNT(*),
{metrics}
FROM s GROUP BY s.step, s.variant ORDER BY s.step, s.variant
"""
_METRIC = """    COUNT(*) FILTER (WHERE EXISTS (
        SELECT 1 FROM {event} e WHERE e.recipient_id = s.recipient_id AND e.type = %s AND NOT e.is_machine
        AND e.occurred_at >= s.sent_at AND (s.until IS NULL OR e.occurred_at < s.until)))"""
METRICS = ("open", "click", "reply", "bounce")
PLURAL = {"open": "opens", "click": "clicks", "reply": "replies", "bounce": "bounces"}


def two_proportion_z(*, successes_a: int, total_a: int, successes_b: int, total_b: int) -> dict:
    """The two-proportion z-test (pooled): z, the two-sided p-value and whether p < 0.05. No
    figures (p None) while either side has no sends or the pooled rate is 0 or 1."""
    if not total_a or not total_b:
        return {"z": None, "p_value": None, "significant": False}
    pooled = (successes_a + successes_b) / (total_a + total_b)
    variance = pooled * (1 - pooled) * (1 / total_a + 1 / total_b)
    if variance <= 0:
        return {"z": None, "p_value": None, "significant": False}
    z = (successes_b / total_b - successes_a / total_a) / math.sqrt(variance)
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"z": round(z, 3), "p_value": round(p_value, 4), "significant": p_value < 0.05}


def variant_stats(*, campaign_id) -> dict:
    """Per step and variant: sent, opens, clicks, replies, bounces (recipients with at least one,
    human events only) and their rates; each variant after the first is compared with the first
    on the campaign's winner metric (opens unless set)."""
    from .models_sequences import SequenceSettings

    metric_sql = ",\n".join(_METRIC.format(event=EmailEvent._meta.db_table) for _ in METRICS)
    sql = _VARIANT_STATS_SQL.format(step_send=StepSend._meta.db_table, metrics=metric_sql)
    campaign = StepSend._meta.get_field("campaign").target_field.get_db_prep_value(campaign_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign, *METRICS])
        rows = cursor.fetchall()
    rules = SequenceSettings.objects.filter(campaign_id=campaign_id).first()
    metric = rules.ab_winner_metric if rules else SequenceSettings.WinnerMetric.OPEN
    winners = set(StepVariant.objects.filter(campaign_id=campaign_id, is_winner=True).values_list("step", "label"))
    steps: dict[int, list[dict]] = {}
    for step, variant, sent, *figures in rows:
        entry = {"variant": variant, "sent": sent, "winner": (step, variant) in winners}
        for name, value in zip(METRICS, figures, strict=True):
            entry[PLURAL[name]] = value
            entry[f"{name}_rate"] = round(value / sent, 4) if sent else 0.0
        steps.setdefault(step, []).append(entry)
    result = []
    for step, variants in steps.items():
        control = variants[0]
        for variant in variants[1:]:
            variant["versus_first"] = two_proportion_z(
                successes_a=control[PLURAL[metric]],
                total_a=control["sent"],
                successes_b=variant[PLURAL[metric]],
                total_b=variant["sent"],
            )
        result.append({"step": step, "variants": variants})
    return {"metric": metric, "steps": result}


_ORDER = {"sent": 0, "stopped": 2}


def recipient_timeline(*, recipient: Recipient) -> dict:
    """Everything that happened to one recipient, oldest first: each step sent (and its variant),
    each event (with the step it followed), the stop and its reason; and what comes next."""
    sends = list(StepSend.objects.filter(recipient=recipient).order_by("step"))
    entries: list[dict[str, Any]] = [
        {"at": send.sent_at, "kind": "sent", "step": send.step, "variant": send.variant, "message_id": send.message_id}
        for send in sends
    ]

    def step_at(at) -> int | None:
        before = [send.step for send in sends if send.sent_at <= at]
        return before[-1] if before else None

    events = EmailEvent.objects.filter(recipient=recipient).order_by("occurred_at", "id")
    for event in events.only("type", "occurred_at", "is_machine", "source")[:500]:
        entries.append(
            {
                "at": event.occurred_at,
                "kind": event.type,
                "step": step_at(event.occurred_at),
                "is_machine": event.is_machine,
                "source": event.source,
            }
        )
    if recipient.stopped_at is not None:
        entries.append(
            {
                "at": recipient.stopped_at,
                "kind": "stopped",
                "step": step_at(recipient.stopped_at),
                "reason": recipient.stop_reason,
            }
        )
    entries.sort(key=lambda entry: (entry["at"], _ORDER.get(entry["kind"], 1)))
    return {
        "recipient": recipient.pk,
        "email": recipient.email,
        "status": recipient.status,
        "step": recipient.sequence_step,
        "steps_total": 1 + SequenceStep.objects.filter(campaign_id=recipient.campaign_id).count(),
        "next_send_at": recipient.next_send_at,
        "stopped_at": recipient.stopped_at,
        "stop_reason": recipient.stop_reason,
        "entries": entries,
    }
