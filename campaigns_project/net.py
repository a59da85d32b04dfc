"""The client's address, read one way everywhere: throttles, the admin login lockout, tracking.

X-Forwarded-For is set by whoever sends the request, so it is believed only as far as the
NUM_PROXIES proxies we run ourselves: with N trusted proxies, the client is the N-th address from
the right (each proxy appends the address it received the request from). With none (the default)
the header is ignored and REMOTE_ADDR is the client. This is DRF's NUM_PROXIES rule, and the same
setting drives both.
"""

import ipaddress

from django.http import HttpRequest
from rest_framework.settings import api_settings


def _valid(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address, or None when no valid address is known."""
    remote = _valid(request.META.get("REMOTE_ADDR"))
    proxies = api_settings.NUM_PROXIES or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        addresses = [part.strip() for part in forwarded.split(",")]
        return _valid(addresses[-min(proxies, len(addresses))]) or remote
    return remote
