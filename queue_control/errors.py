class QueuePaused(Exception):
    """Raised instead of making an external call: the queue is paused, or the service's breaker is
    not closed. The caller (the job runner) leaves its work for the queue resume."""

    def __init__(self, message: str, *, service: str = "") -> None:
        super().__init__(message)
        self.service = service
