"""Every write of the tracking app: recipients, their transitions, events, suppressions.

The API views, the public tracking URLs, the webhooks, the send handler and the admin all call
these functions; none of them changes a recipient's status or a counter on its own. Each lives in
the module named for what it holds, and this module is the app's one import point for them:

- tracking/recipients.py — recipients' lifecycle, their transitions, send jobs, suppressions;
- tracking/events.py — recording events and what follows from them;
- tracking/opens.py — the pixel's buffered opens (the Redis wire protocol and the drain).
"""

from .events import (
    FIRST_SEEN_FIELDS,
    ONCE_PER_RECIPIENT,
    event_record,
    event_record_seen,
    recipient_bounce_on_send,
    recipient_unsubscribe,
    seen_metrics,
)
from .opens import OPENS_CONNECTION_NAME, OPENS_SOURCE, open_buffer, opens_drain, opens_pending
from .recipients import (
    MAX_RECIPIENTS_PER_REQUEST,
    normalize_email,
    recipient_delete,
    recipients_add,
    recipients_fail_suppressed,
    recipients_mark_sent,
    recipients_release,
    recipients_resolve,
    recipients_transition,
    send_jobs_create,
    suppressed_emails,
    suppression_add,
)

__all__ = [
    "FIRST_SEEN_FIELDS",
    "MAX_RECIPIENTS_PER_REQUEST",
    "ONCE_PER_RECIPIENT",
    "OPENS_CONNECTION_NAME",
    "OPENS_SOURCE",
    "event_record",
    "event_record_seen",
    "normalize_email",
    "open_buffer",
    "opens_drain",
    "opens_pending",
    "recipient_bounce_on_send",
    "recipient_delete",
    "recipient_unsubscribe",
    "recipients_add",
    "recipients_fail_suppressed",
    "recipients_mark_sent",
    "recipients_release",
    "recipients_resolve",
    "recipients_transition",
    "send_jobs_create",
    "seen_metrics",
    "suppressed_emails",
    "suppression_add",
]
