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
