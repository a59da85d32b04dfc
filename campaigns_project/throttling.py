"""API throttles. Every throttle here:

- identifies an anonymous client by `net.client_ip` (NUM_PROXIES), never by a raw X-Forwarded-For,
  so rotating that header does not lift the anonymous limit;
- reads its rate from the settings at request time (DRF's own classes bind the rates once at
  import, so a changed setting would be ignored);
- answers 429 with Retry-After and a JSON body (the exception handler sees to both).

Failed authentication has a throttle of its own (`FailedAuthThrottle`): each 401 counts against
the client's address, and once over the limit the address is refused with 429 *before* its
credentials are checked (`authentication.FailedAuthLockout`), so a guessing client cannot tell a
right token from a wrong one while it is locked out.
"""

import math

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import throttling
from rest_framework.settings import api_settings

from .net import client_ip


class SettingsRateMixin:
    scope: str | None  # the throttle's (SimpleRateThrottle)

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) if self.scope is not None else None

    def get_ident(self, request) -> str:
        return client_ip(request) or "unknown"


class UserRateThrottle(SettingsRateMixin, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(SettingsRateMixin, throttling.AnonRateThrottle):
    pass


class ScopedRateThrottle(SettingsRateMixin, throttling.ScopedRateThrottle):
    """For views that set `throttle_scope` (per user, or per address when anonymous)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) if self.scope else None


class FailedAuthThrottle(SettingsRateMixin, throttling.SimpleRateThrottle):
    """Failed authentications per client address, within the `auth_failure` rate."""

    scope = "auth_failure"

    def __init__(self):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def get_cache_key(self, request, view=None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def _history(self, request, duration: int) -> list[float]:
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        return [t for t in self.cache.get(self.key, []) if t > self.now - duration]

    def blocked_for(self, request) -> float | None:
        """Seconds until this address may try again, or None when it is not locked out."""
        # parse_rate gives None for both figures exactly when there is no rate.
        if self.rate is None or self.num_requests is None or self.duration is None:
            return None
        self.history = self._history(request, self.duration)
        if len(self.history) < self.num_requests:
            return None
        return max(self.history[-1] + self.duration - self.now, 1.0)

    def record_failure(self, request) -> None:
        if self.rate is None or self.num_requests is None or self.duration is None:
            return
        history = [self.timer(), *self._history(request, self.duration)][: self.num_requests + 1]
        self.cache.set(self.key, history, self.duration)


def retry_after(seconds: float | None) -> str:
    return str(max(1, math.ceil(seconds or 1)))


def admin_lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out login: 429 with Retry-After (the cool-off), in JSON
    unless the client asks for HTML first (a browser on the admin login page)."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else 3600
    minutes = max(1, math.ceil(seconds / 60))
    detail = f"Too many failed login attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    accept = request.META.get("HTTP_ACCEPT", "")
    wants_html = "text/html" in accept and (
        "application/json" not in accept or accept.index("text/html") < accept.index("application/json")
    )
    if wants_html:
        from django.shortcuts import render

        response = render(request, "admin/locked_out.html", {"detail": detail, "title": "Locked out"}, status=429)
    else:
        response = JsonResponse({"detail": detail, "retry_after": seconds}, status=429)
    response["Retry-After"] = str(seconds)
    return response
