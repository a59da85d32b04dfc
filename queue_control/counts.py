"""The status page's work counts, from the apps above queue control (it does not know their
models). Each app registers a counter by name in its AppConfig.ready(); `queue_counts_collect`
asks each in turn. (This was a signal sent as a query; a registry says who answers.)"""

from collections.abc import Callable

# name -> counter(organization_ids=None | list) -> {"paused_campaigns": 3, "paused_jobs": 120, …}
QUEUE_COUNTERS: dict[str, Callable[..., dict[str, int]]] = {}


def queue_counts_register(name: str, counter: Callable[..., dict[str, int]]) -> None:
    QUEUE_COUNTERS[name] = counter


def queue_counts_collect(*, organization_ids: list | None = None) -> dict[str, int]:
    """Every registered counter's counts: of every organization (None), or of these only."""
    counts: dict[str, int] = {}
    for counter in QUEUE_COUNTERS.values():
        counts.update(counter(organization_ids=organization_ids))
    return counts
