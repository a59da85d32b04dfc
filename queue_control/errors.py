class QueuePaused(Exception):
    """Raised instead of making an external call: the queue is paused, or the service's breaker is
    not closed. The caller (the job runner) leaves its work for the queue resume.

    `unreachable` says the gate could not be read at all (Redis down): no operator paused
    anything, so the work waits and goes on by itself once Redis answers."""

    def __init__(self, message: str, *, service: str = "", unreachable: bool = False) -> None:
        super().__init__(message)
        self.service = service
        self.unreachable = unreachable
