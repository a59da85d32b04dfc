"""OPTIONS answers: DRF's SimpleMetadata, which describes a view's request body from its one
serializer. A ViewSet without one (its bodies are per action: queue pause, a transition, a
webhook, an upload; the schema documents each) answers without `actions`, as an APIView did,
instead of failing on the serializer it does not have."""

from rest_framework.metadata import SimpleMetadata


class Metadata(SimpleMetadata):
    def determine_actions(self, request, view):
        if getattr(view, "serializer_class", None) is None and "get_serializer_class" not in vars(type(view)):
            return {}
        return super().determine_actions(request, view)
