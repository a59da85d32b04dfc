"""How queue control tells the apps above it to cascade, without importing them.

Both signals are sent inside the transaction that changes the queue latch, so a receiver's
set-based UPDATEs commit or roll back together with the latch.
"""

from django.dispatch import Signal

# kwargs: kind ("breaker" | "manual"), service (the breaker's, or ""), reason (the display string,
# for history only), actor (User | None), actor_label (str)
queue_paused = Signal()
# kwargs: actor (User | None), actor_label (str)
queue_resumed = Signal()
# Receivers return a dict of counts for the status page, e.g. {"paused_campaigns": 3, "paused_jobs": 120}.
# kwargs: organization_ids (None: every organization; else count only these organizations' work)
queue_counts_requested = Signal()
