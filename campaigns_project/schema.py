"""The OpenAPI schema tells the truth about errors, for every operation, including ones added later.

`AutoSchema` adds to each operation the error answers it can give, unless the view documents that
code itself (then the view's own description and body win):

- 400 always: any operation refuses a NUL in a query parameter, and bodies are validated;
- 401 and 403 where a permission applies (403 also for CSRF on session-authenticated writes);
- 404 where the path names an object, or the list is paginated (a page beyond the last);
- 409 for writes to a named object (a state machine or the queue may refuse them);
- 413 and 415 where a request body is read;
- 414 always (campaigns_project.middleware.RequestGuardMiddleware);
- 429 with Retry-After wherever a throttle applies.

`refuse_additional_properties` (a postprocessing hook) marks every request body component
`additionalProperties: false`: the serializers refuse unknown fields (campaigns_project.serializers).
"""

from drf_spectacular import openapi
from drf_spectacular.plumbing import get_view_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PATH_STRINGS = {
    "campaign_pk": "The campaign's id.",
    "recipient_id": "The recipient's id.",
    "delivery_id": "The delivery's id.",
    "service": "The service's name.",
}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words.")


class ThrottledSerializer(ErrorSerializer):
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (as in Retry-After).")


class ConflictSerializer(ErrorSerializer):
    current_status = serializers.CharField(required=False)
    allowed_transitions = serializers.ListField(child=serializers.CharField(), required=False)


VALIDATION_ERROR = {
    "type": "object",
    "description": "Each refused field (or `non_field_errors`, or `detail` for a body that is not valid "
    "JSON) with a list of messages; nested serializers nest.",
    "additionalProperties": {},
}
RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds until a retry may succeed."}
}


def _error(description: str, serializer=ErrorSerializer) -> OpenApiResponse:
    return OpenApiResponse(response=serializer, description=description)


class AutoSchema(openapi.AutoSchema):
    def _resolve_path_parameters(self, variables):
        """`campaign_pk`, the campaign of a sub-resource (campaigns/(?P<campaign_pk>[^/.]+)/…), is its
        id, a string, whatever model the sub-resource lists; so are the ids of the ViewSets that
        list no model (a recipient's tracking, a delivery's replay, a breaker's service)."""
        modelless = get_view_model(self.view, emit_warnings=False) is None
        fixed = [v for v in variables if v == "campaign_pk" or (modelless and v in PATH_STRINGS)]
        parameters = super()._resolve_path_parameters([v for v in variables if v not in fixed])
        for name in fixed:
            parameters.insert(
                variables.index(name),
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": PATH_STRINGS[name],
                },
            )
        return parameters

    def _is_list_view(self, serializer=None) -> bool:
        """A sub-resource ViewSet that answers one object at its collection route (a campaign's
        stats, analytics, phases, progress: `single_object = True`) is not a list."""
        if getattr(self.view, "single_object", False):
            return False
        return super()._is_list_view(serializer)

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if getattr(self.view, "single_object", False) and operation_id.endswith("_list"):
            return operation_id.removesuffix("_list") + "_retrieve"
        return operation_id

    def _has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")

    def _permission_applies(self) -> bool:
        return any(not isinstance(permission, permissions.AllowAny) for permission in self.view.get_permissions())

    def _error_responses(self) -> dict[str, OpenApiResponse | dict]:
        errors: dict[str, OpenApiResponse | dict] = {
            "400": OpenApiResponse(response=VALIDATION_ERROR, description="Bad input; nothing was written."),
            "414": _error("The request URI is too long."),
        }
        if self._permission_applies():
            errors["401"] = _error("No valid credentials (token or session).")
            errors["403"] = _error("Your role does not allow this (or the CSRF check of a session failed).")
        if "{" in self.path or self._get_paginator() is not None:
            errors["404"] = _error("No such object (unknown, malformed or another organization's), or no such page.")
        if self.method not in SAFE_METHODS and "{" in self.path:
            errors["409"] = _error(
                "Refused in the object's current state (or while the queue is paused); "
                "`detail` says why and nothing changed.",
                ConflictSerializer,
            )
        if self._has_body():
            errors["413"] = _error("The request body is too large.")
            errors["415"] = _error("The request body's media type is not accepted.")
        if self.view.get_throttles():
            errors["429"] = _error("Too many requests; retry after Retry-After seconds.", ThrottledSerializer)
        return errors

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, error in self._error_responses().items():
            if code in responses:
                continue
            responses[code] = self._get_response_for_code(error, code, media_types=["application/json"])
            if isinstance(error, OpenApiResponse) and error.description:
                responses[code]["description"] = error.description
        if "429" in responses:
            responses["429"].setdefault("headers", {}).update(RETRY_AFTER)
        return responses


def _request_component_names(result: dict) -> set[str]:
    names: set[str] = set()
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    names.add(ref.rsplit("/", 1)[1])
    return names


def _nested_refs(schema) -> set[str]:
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                found.add(ref.rsplit("/", 1)[1])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# Request bodies that take more than they name: providers' webhook payloads grow new keys.
OPEN_REQUEST_COMPONENTS = {"GenericWebhookRequest", "InstantlyWebhookRequest"}


def refuse_additional_properties(result, generator, request, public):
    """Request bodies accept only the fields they name: mark them (and the objects nested in them)
    `additionalProperties: false`, unless a schema says otherwise (webhook payloads do)."""
    components = result.get("components", {}).get("schemas", {})
    pending, seen = list(_request_component_names(result)), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        schema = components[name]
        if name in OPEN_REQUEST_COMPONENTS:
            schema["additionalProperties"] = True
        elif schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        pending.extend(_nested_refs(schema) - seen)
    return result


__all__ = ["AutoSchema", "ErrorSerializer", "OpenApiTypes", "refuse_additional_properties"]
