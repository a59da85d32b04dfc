class ApplicationError(Exception):
    """The one error services raise for a refused change. The API answers it with 409, the admin
    shows its message. `extra` carries structured facts (current status, allowed transitions)."""

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra
