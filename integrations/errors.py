"""Typed provider errors.

Every client and sandbox raises only these, so the layers above (the job runner, the circuit
breakers) decide by type and by two class-level flags, never by parsing messages:

- `counts_for_breaker`: the failure says something about the service, not about one input.
- `trips_immediately`: retrying cannot help (credit or quota is gone), so open the breaker now.
"""


class ProviderError(Exception):
    counts_for_breaker: bool = True
    trips_immediately: bool = False
    # Set by the SMTP sender only (tracking.sending): whether the server may have accepted the
    # message before failing. Declared, not defaulted: readers use getattr with their own default.
    delivery_uncertain: bool

    def __init__(self, service: str, message: str, status_code: int | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message
        self.status_code = status_code


class AuthError(ProviderError):
    """401/403 or a missing/invalid key: every further call fails the same way."""


class RateLimitedError(ProviderError):
    """A 429 that the client's own retries (PROVIDER_MAX_RETRIES) could not get past."""

    def __init__(
        self, service: str, message: str, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(service, message, status_code)
        self.retry_after = retry_after


class QuotaExhaustedError(ProviderError):
    """Out of credit or quota (OpenAI insufficient_quota, MillionVerifier credits)."""

    trips_immediately = True


class BadRequestError(ProviderError):
    """The provider refused one input (a malformed email, an unknown id): that job fails alone."""

    counts_for_breaker = False


class ServerError(ProviderError):
    """5xx (after retries), or an answer we cannot read."""


class SandboxInjectedFailure(ServerError):
    """A sandbox failing on purpose (SANDBOX_FAIL or the admin toggle), to demo a breaker trip."""


class ProviderTimeout(ProviderError):
    pass


class ProviderConnectionError(ProviderError):
    pass
