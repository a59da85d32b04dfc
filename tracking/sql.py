"""tracking's hand-written SQL, in one place to be read as SQL. Table names come from the models
(`TABLES`, formatted in once at import); every value is a bound parameter."""

from .models import CampaignCounter, EmailEvent, Recipient

TABLES = {
    "recipient": Recipient._meta.db_table,
    "event": EmailEvent._meta.db_table,
    "counter": CampaignCounter._meta.db_table,
}


# One statement for an open or a click from the public URLs, on PostgreSQL: the pixel's hot path.
# It does what event_record does for these types (lock the recipient, insert the event, set the
# first-seen timestamps, count), in one round trip and one autocommitted transaction instead of
# seven round trips, which is what decides the pixel's throughput (benchmarks/pixel.py).
# set_config(..., true) turns synchronous_commit off for this transaction only: a PostgreSQL crash
# may lose the last fraction of a second of opens and clicks, never corrupt anything.
SEEN_SQL = """
WITH r AS (
    SELECT id, campaign_id,
        {any_field} IS NULL AS first_any,
        {human_field} IS NULL AND NOT %(machine)s AS first_human
    FROM {recipient} WHERE token = %(token)s
    FOR NO KEY UPDATE
), seen AS (
    UPDATE {recipient} t
    SET {any_field} = COALESCE(t.{any_field}, %(at)s),
        {human_field} = CASE WHEN r.first_human THEN %(at)s ELSE t.{human_field} END
    FROM r WHERE t.id = r.id AND (r.first_any OR r.first_human)
), event AS (
    INSERT INTO {event}
        (recipient_id, campaign_id, type, occurred_at, link_id, user_agent, ip, is_machine, source, payload)
    SELECT id, campaign_id, %(type)s, %(at)s, %(link)s, %(ua)s, %(ip)s, %(machine)s, 'tracking', '{{}}' FROM r
    RETURNING id, recipient_id, campaign_id
), counted AS (
    INSERT INTO {counter} (campaign_id, metric, shard, value)
    SELECT r.campaign_id, m.metric, %(shard)s, 1
    FROM r CROSS JOIN LATERAL (VALUES
        ('event.' || %(type)s, true),
        ('event.' || %(type)s || '.human', NOT %(machine)s),
        ('unique.' || %(type)s, r.first_any),
        ('unique.' || %(type)s || '.human', r.first_human)
    ) AS m (metric, counts)
    WHERE m.counts
    ORDER BY m.metric
    ON CONFLICT (campaign_id, metric, shard) DO UPDATE SET value = {counter}.value + 1
)
SELECT recipient_id, campaign_id, set_config('synchronous_commit', 'off', true) FROM event
"""


def seen_statement(*, any_field: str, human_field: str) -> str:
    """SEEN_SQL for one kind of event (an open, a click): its Recipient first-seen fields."""
    return SEEN_SQL.format(any_field=any_field, human_field=human_field, **TABLES)


# One statement per batch: insert the events of known tokens (a replayed entry id inserts nothing),
# lock their recipients in id order, set the first-seen timestamps the inserted events bring, and
# return per campaign what the counters must add, from the rows actually inserted only. Committed
# synchronously (unlike the direct path): the entries leave Redis once the commit says they are safe.
_OPENS_DRAIN_TEMPLATE = """
WITH e AS (
    SELECT * FROM unnest(%(ids)s::text[], %(tokens)s::text[], %(ats)s::timestamptz[], %(machine)s::boolean[],
        %(uas)s::text[], %(ips)s::inet[]) WITH ORDINALITY AS e (id, token, at, machine, ua, ip, n)
), inserted AS (
    INSERT INTO {event}
        (recipient_id, campaign_id, type, occurred_at, link_id, user_agent, ip, is_machine, source,
         provider_event_id, payload)
    SELECT r.id, r.campaign_id, 'open', e.at, NULL, e.ua, e.ip, e.machine, %(source)s, e.id, '{{}}'
    FROM e JOIN {recipient} r ON r.token = e.token
    ORDER BY e.n  -- event ids in the order the opens arrived
    ON CONFLICT (source, provider_event_id) WHERE provider_event_id IS NOT NULL DO NOTHING
    RETURNING recipient_id, occurred_at, is_machine
), per_recipient AS (
    SELECT recipient_id, count(*) AS events, count(*) FILTER (WHERE NOT is_machine) AS human_events,
        min(occurred_at) AS first_at, min(occurred_at) FILTER (WHERE NOT is_machine) AS first_human_at
    FROM inserted GROUP BY recipient_id
), r AS (
    SELECT t.id, t.campaign_id, p.events, p.human_events, p.first_at, p.first_human_at,
        t.first_opened_at IS NULL AS first_any,
        t.first_human_opened_at IS NULL AND p.first_human_at IS NOT NULL AS first_human
    FROM {recipient} t JOIN per_recipient p ON p.recipient_id = t.id
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
), seen AS (
    -- LEAST ignores NULLs: an earlier open drained late still becomes the first one.
    UPDATE {recipient} t
    SET first_opened_at = LEAST(t.first_opened_at, r.first_at),
        first_human_opened_at = LEAST(t.first_human_opened_at, r.first_human_at)
    FROM r
    WHERE t.id = r.id AND (
        t.first_opened_at IS NULL OR r.first_at < t.first_opened_at
        OR (r.first_human_at IS NOT NULL
            AND (t.first_human_opened_at IS NULL OR r.first_human_at < t.first_human_opened_at)))
)
SELECT campaign_id, sum(events)::int, sum(human_events)::int, count(*) FILTER (WHERE first_any),
    count(*) FILTER (WHERE first_human)
FROM r GROUP BY campaign_id ORDER BY campaign_id
"""
OPENS_DRAIN_SQL = _OPENS_DRAIN_TEMPLATE.format(**TABLES)
