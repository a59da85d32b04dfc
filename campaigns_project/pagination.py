"""The API's two paginators.

`Pagination` (page numbers with a `count`) for the small lists: campaigns, webhook endpoints,
history. `HasNextPagination` for the lists that grow with the work (jobs, leads, recipients,
events): the same `page` and `page_size` parameters, but no `count`, since counting every row of a
million-row list is what made a page slow; it reads one row beyond the page to know whether a
next page exists."""

from django.core.paginator import InvalidPage
from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class HasNextPagination(BasePagination):
    """`{"next", "previous", "results"}`: page N of page_size rows, no COUNT(*)."""

    page_query_param = "page"
    page_size_query_param = "page_size"
    max_page_size = 500
    invalid_page_message = "Invalid page."

    def _page_size(self, request) -> int:
        default = api_settings.PAGE_SIZE or 50
        raw = request.query_params.get(self.page_size_query_param)
        try:
            size = int(raw) if raw is not None else default
        except ValueError:
            return default
        return min(size, self.max_page_size) if size > 0 else default

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_size = self._page_size(request)
        raw = request.query_params.get(self.page_query_param, "1")
        try:
            self.page = int(raw)
            if self.page < 1:
                raise ValueError
        except ValueError:
            raise NotFound(self.invalid_page_message) from InvalidPage(raw)
        start = (self.page - 1) * self.page_size
        rows = list(queryset[start : start + self.page_size + 1])
        self.has_next = len(rows) > self.page_size
        if not rows and self.page > 1:
            raise NotFound(self.invalid_page_message)
        return rows[: self.page_size]

    def _link(self, page: int | None) -> str | None:
        if page is None:
            return None
        url = self.request.build_absolute_uri()
        if page == 1:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, page)

    def get_paginated_response(self, data):
        return Response(
            {
                "next": self._link(self.page + 1 if self.has_next else None),
                "previous": self._link(self.page - 1 if self.page > 1 else None),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "required": ["results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "A page number within the paginated result set.",
                "schema": {"type": "integer"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Number of results to return per page (at most {self.max_page_size}).",
                "schema": {"type": "integer"},
            },
        ]
