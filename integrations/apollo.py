"""Apollo, the lead source: a campaign's search URL becomes API filters; a page of search
results becomes leads with emails.

Search returns no emails, so each page costs one search call (free) plus bulk_match calls of at
most ten people each (credits), and people Apollo has no email for are dropped.
"""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .http import ProviderClient

SEARCH_PATH = "/api/v1/mixed_people/api_search"
BULK_MATCH_PATH = "/api/v1/people/bulk_match"
MAX_PER_PAGE = 100
MAX_PAGE = 500
BULK_MATCH_SIZE = 10
APP_HOST = "app.apollo.io"
# App-only URL parameters: view state and sort order, not search filters.
UI_PARAMS = {"page", "sortByField", "sortAscending", "finderViewId", "uniqueUrlId", "viewMode"}
RENAMED = {"contactEmailStatusV2": "contact_email_status"}
# What Apollo puts in `email` when the address exists but was not revealed.
LOCKED_EMAIL_PREFIX = "email_not_unlocked@"


@dataclass(frozen=True)
class LeadData:
    email: str
    first_name: str = ""
    last_name: str = ""
    title: str = ""
    company: str = ""
    company_domain: str = ""
    linkedin_url: str = ""
    phone: str = ""
    source_id: str = ""


@dataclass(frozen=True)
class LeadsPage:
    leads: list[LeadData]
    total: int
    has_more: bool


def parse_search_url(url: str) -> dict[str, Any]:
    """API filters from an Apollo people-search URL (https://app.apollo.io/#/people?...).

    The app keeps its query in the fragment; list parameters end in [] (personTitles[]=cto) and
    camelCase names become the API's snake_case ones (person_titles).
    """
    not_apollo = "Enter an Apollo people search URL: it starts with https://app.apollo.io/#/people?"
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ValueError(not_apollo)
    if parts.scheme != "https" or parts.netloc.lower() != APP_HOST:
        raise ValueError(not_apollo)
    path, _, query = parts.fragment.partition("?")
    if path.rstrip("/") != "/people":
        raise ValueError(f"This Apollo URL is not a people search. {not_apollo}")
    filters: dict[str, Any] = {}
    for key, value in parse_qsl(query):
        name = key.removesuffix("[]")
        if name in UI_PARAMS:
            continue
        name = RENAMED.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
        if key.endswith("[]"):
            filters.setdefault(name, []).append(value)
        else:
            filters[name] = {"true": True, "false": False}.get(value, value)
    if not filters:
        raise ValueError("This Apollo search has no filters. Add at least a title, a location or keywords.")
    return filters


def check_page(page: int, per_page: int) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page must be between 1 and {MAX_PAGE} (Apollo's limit), got {page}")


def has_more_pages(*, page: int, per_page: int, total: int) -> bool:
    return page < MAX_PAGE and page * per_page < total


class ApolloClient(ProviderClient):
    service = "apollo"

    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def fetch_leads(self, *, filters: dict[str, Any], page: int, per_page: int = MAX_PER_PAGE) -> LeadsPage:
        check_page(page, per_page)
        found = self.request("POST", SEARCH_PATH, json={**filters, "page": page, "per_page": per_page})
        people = found.get("people") or []
        total = int(found.get("total_entries") or (found.get("pagination") or {}).get("total_entries") or 0)
        ids = [person["id"] for person in people if person.get("id")]
        leads: list[LeadData] = []
        for start in range(0, len(ids), BULK_MATCH_SIZE):
            details = [{"id": person_id} for person_id in ids[start : start + BULK_MATCH_SIZE]]
            matched = self.request("POST", BULK_MATCH_PATH, json={"details": details})
            leads.extend(lead for match in matched.get("matches") or [] if (lead := _lead_from(match)))
        has_more = bool(people) and has_more_pages(page=page, per_page=per_page, total=total)
        return LeadsPage(leads=leads, total=total, has_more=has_more)


def _lead_from(match: dict[str, Any] | None) -> LeadData | None:
    email = ((match or {}).get("email") or "").strip().lower()
    if not match or not email or email.startswith(LOCKED_EMAIL_PREFIX):
        return None
    organization = match.get("organization") or {}
    phones = match.get("phone_numbers") or [{}]
    return LeadData(
        email=email,
        first_name=match.get("first_name") or "",
        last_name=match.get("last_name") or "",
        title=match.get("title") or "",
        company=organization.get("name") or "",
        company_domain=organization.get("primary_domain") or "",
        linkedin_url=match.get("linkedin_url") or "",
        phone=phones[0].get("sanitized_number") or phones[0].get("raw_number") or "",
        source_id=str(match.get("id") or ""),
    )
