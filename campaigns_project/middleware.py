"""Guards every request passes before any view, and the rule that every error under /api/ is JSON.

Both are middleware rather than per-view code so that endpoints added later get them for free.
"""

from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .parsers import NUL_MESSAGE

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def json_error(status: int, detail: str, **extra) -> JsonResponse:
    return JsonResponse({"detail": detail, **extra}, status=status)


def _plain_error(status: int, detail: str) -> HttpResponse:
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class RequestGuardMiddleware:
    """Refuses, before any view or database query sees them:

    - a request URI (path and query string) longer than MAX_REQUEST_URI_LENGTH: 414;
    - a NUL character in any query parameter's name or value: 400 naming the parameter.
      PostgreSQL cannot take a NUL in any string, so a search or a filter holding one would
      otherwise fail deep in a query;
    - a NUL in the path: 404, like any other malformed id (design §9 (docs/design.md): malformed ids are 404s).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        error = self._refusal(request)
        if error is not None:
            status, detail, field = error
            if is_api_request(request):
                return JsonResponse({field: [detail]} if field else {"detail": detail}, status=status)
            return _plain_error(status, f"{field}: {detail}" if field else detail)
        return self.get_response(request)

    def _refusal(self, request: HttpRequest) -> tuple[int, str, str] | None:
        length = len(request.META.get("PATH_INFO", "")) + len(request.META.get("QUERY_STRING", ""))
        if length > settings.MAX_REQUEST_URI_LENGTH:
            return (
                HTTPStatus.REQUEST_URI_TOO_LONG,
                f"The request URI is longer than {settings.MAX_REQUEST_URI_LENGTH} characters.",
                "",
            )
        if "\x00" in request.path_info:
            return HTTPStatus.NOT_FOUND, "Not found.", ""
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return HTTPStatus.BAD_REQUEST, NUL_MESSAGE, name.replace("\x00", "\\x00")
        return None


class ApiJSONErrorsMiddleware:
    """Every error answer under /api/ is JSON: Django's own 404 for an unmatched route, the 400 of
    a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a CSRF refusal, a 500 — whatever produced it, a
    non-JSON error becomes {"detail": <reason>} with the same status.

    Every 429, API or not, carries Retry-After (RFC 6585 says it may; our clients rely on it)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == HTTPStatus.TOO_MANY_REQUESTS and not response.has_header("Retry-After"):
            response["Retry-After"] = "60"
        if response.status_code >= 400 and is_api_request(request) and not _is_json(response):
            replacement = json_error(response.status_code, _reason(response))
            for header in ("Retry-After", "WWW-Authenticate", "Allow"):
                if response.has_header(header):
                    replacement[header] = response[header]
            return replacement
        return response


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() == "application/json"


def _reason(response: HttpResponse) -> str:
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = "Error"
    return {404: "Not found.", 500: "Server error."}.get(response.status_code, phrase + ".")
