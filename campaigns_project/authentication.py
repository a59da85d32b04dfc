from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.exceptions import Throttled

from .throttling import FailedAuthThrottle


class FailedAuthLockout(BaseAuthentication):
    """First in DEFAULT_AUTHENTICATION_CLASSES: an address over its failed-authentication limit
    is answered 429 before any credential is looked at. It authenticates nobody itself."""

    def authenticate(self, request):
        wait = FailedAuthThrottle().blocked_for(request)
        if wait is not None:
            raise Throttled(wait=wait, detail="Too many failed authentication attempts from this address.")
        return None

    def authenticate_header(self, request) -> str | None:
        # DRF asks the first authenticator for WWW-Authenticate, which turns a refusal into 401
        # (not 403): answer for the token scheme the next class implements.
        return TokenAuthentication().authenticate_header(request)
