"""The API's exception handler: one place that decides the status and the JSON body of every error.

- ApplicationError (a refused change) -> 409 with its facts;
- Django ValidationError -> 400 naming the fields;
- a body over DATA_UPLOAD_MAX_MEMORY_SIZE -> 413, too many form fields or files -> 400;
- 429 always carries Retry-After;
- 401 counts against the client's failed-authentication limit (throttling.FailedAuthThrottle);
- a DataError (a value the database refused) -> 400: the input fields should have refused it
  first, so it is logged as an error to fix, but the client still gets a 4xx, never a 500.
"""

import logging

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError
from .throttling import FailedAuthThrottle, retry_after

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    request = context.get("request")
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, **exc.extra}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DjangoValidationError):
        return Response(as_serializer_error(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "The request body is too large."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DataError):
        logger.error("The database refused a value an input field let through", exc_info=exc)
        return Response(
            {"detail": "A value in the request is out of the range that can be stored."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed) and request is not None:
        FailedAuthThrottle().record_failure(request)
    response = drf_exception_handler(exc, context)
    if response is not None and response.status_code == status.HTTP_429_TOO_MANY_REQUESTS:
        response["Retry-After"] = retry_after(getattr(exc, "wait", None))
        if isinstance(response.data, dict) and getattr(exc, "wait", None) is not None:
            response.data["retry_after"] = int(retry_after(exc.wait))
    return response
