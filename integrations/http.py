"""The shared base of the real provider clients: one httpx.Client per client object (timeouts,
base_url, auth header, user agent), responses and transport exceptions mapped to the typed errors
of integrations.errors, and short bounded retries of 429 and 5xx.

Timeouts and connection errors are not retried here: the request may have reached the provider
(a POST that creates something), and the job runner above retries whole jobs with backoff.
"""

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import sleep
from typing import Any, ClassVar, Self

import httpx
from django.conf import settings

from .errors import (
    AuthError,
    BadRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExhaustedError,
    RateLimitedError,
    ServerError,
)

USER_AGENT = "campaign-backoffice/1.0 (+integrations)"


def retry_backoff_seconds() -> float:
    return settings.PROVIDER_RETRY_BACKOFF_SECONDS


def retry_after_max_seconds() -> float:
    return settings.PROVIDER_RETRY_AFTER_MAX_SECONDS


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent/garbled."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_message(body: Any, response: httpx.Response) -> str:
    """The provider's own words about an error, short enough for a job's last_error."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:300]
    return f"HTTP {response.status_code}: {response.text[:200]}"


class ProviderClient:
    service: ClassVar[str]

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self.api_key = api_key
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **self.auth_headers()},
        )

    @classmethod
    def from_settings(cls) -> Self:
        conf = settings.PROVIDERS[cls.service]
        return cls(api_key=conf["api_key"], base_url=conf["base_url"], timeout=settings.PROVIDER_TIMEOUT_SECONDS)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request (retrying 429 and 5xx) and return the decoded JSON body."""
        if not self.api_key:
            raise AuthError(self.service, "no API key configured")
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise ProviderTimeout(self.service, f"no answer within {self.timeout:g}s ({exc})")
            except httpx.TransportError as exc:
                raise ProviderConnectionError(self.service, f"connection failed: {exc}")
            body = _json_or_none(response)
            error = self.error_for(response, body)
            if error is None:
                if body is None and response.content:
                    raise ServerError(self.service, "the answer is not JSON", response.status_code)
                return body if body is not None else {}
            if attempt >= settings.PROVIDER_MAX_RETRIES or not isinstance(error, RateLimitedError | ServerError):
                raise error
            sleep(self.retry_delay(error, attempt))
            attempt += 1

    def retry_delay(self, error: ProviderError, attempt: int) -> float:
        cap = retry_after_max_seconds()
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, cap)
        return min(retry_backoff_seconds() * 2**attempt, cap)

    def error_for(self, response: httpx.Response, body: Any) -> ProviderError | None:
        """The typed error a response stands for, or None for a success. Subclasses refine it."""
        status = response.status_code
        if 200 <= status < 300:
            return None
        message = error_message(body, response)
        if status in (401, 403):
            return AuthError(self.service, message, status)
        if status == 402:
            return QuotaExhaustedError(self.service, message, status)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimitedError(self.service, message, status, retry_after=retry_after)
        if 400 <= status < 500:
            return BadRequestError(self.service, message, status)
        return ServerError(self.service, message, status)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
