"""MillionVerifier, email verification. Every call costs a credit, so callers verify an address
at most once per campaign.

Its errors (bad key, no credits, IP blocked, internal error) may come as an HTTP status or as an
`error` field in a 200 answer; both map to the same typed errors.
"""

from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx

from .errors import AuthError, BadRequestError, ProviderError, QuotaExhaustedError, ServerError
from .http import ProviderClient

Result = Literal["ok", "catch_all", "invalid", "unknown", "disposable"]
RESULTS: tuple[Result, ...] = ("ok", "catch_all", "invalid", "unknown", "disposable")
# MillionVerifier result -> Lead.email_status.
EMAIL_STATUS = {
    "ok": "valid",
    "catch_all": "catch_all",
    "invalid": "invalid",
    "disposable": "invalid",
    "unknown": "unknown",
}


@dataclass(frozen=True)
class VerificationResult:
    result: Result
    quality: str
    subresult: str
    credits: int | None
    raw: dict[str, Any]


def email_status_for(result: str) -> str:
    return EMAIL_STATUS.get(result, "unknown")


class MillionVerifierClient(ProviderClient):
    service = "millionverifier"

    def auth_headers(self) -> dict[str, str]:
        return {}  # the key travels as the `api` query parameter

    def verify(self, email: str) -> VerificationResult:
        # MillionVerifier stops trying after `timeout` seconds (2-60) and answers unknown; ask it
        # to stop just before our own HTTP timeout would cut the connection.
        server_timeout = min(60, max(2, int(self.timeout) - 1))
        body = self.request("GET", "/api/v3/", params={"api": self.api_key, "email": email, "timeout": server_timeout})
        result = body.get("result")
        credits = body.get("credits")
        return VerificationResult(
            result=cast(Result, result) if result in RESULTS else "unknown",
            quality=str(body.get("quality") or ""),
            subresult=str(body.get("subresult") or ""),
            credits=int(credits) if isinstance(credits, int | float) else None,
            raw=body,
        )

    def error_for(self, response: httpx.Response, body: Any) -> ProviderError | None:
        message = body.get("error") if isinstance(body, dict) else None
        if not message:
            return super().error_for(response, body)
        message = str(message)[:300]
        status = response.status_code
        words = message.lower()
        if "credit" in words:
            return QuotaExhaustedError(self.service, message, status)
        if "key" in words or "blocked" in words or "unauthori" in words:
            return AuthError(self.service, message, status)
        if 200 <= status < 300:
            # A 200 carrying an error we do not recognise: a bad email is about one input,
            # anything else is the service's problem.
            if "email" in words:
                return BadRequestError(self.service, message, status)
            return ServerError(self.service, message, status)
        return super().error_for(response, body)
