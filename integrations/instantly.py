"""Instantly (API v2), the hosted sending channel: campaigns, their leads, analytics, pause/resume."""

from dataclasses import dataclass, field
from typing import Any

from .errors import ServerError
from .http import ProviderClient

API = "/api/v2"
MAX_LEADS_PER_CALL = 1000
# Instantly requires a schedule at creation; operators adjust it in Instantly afterwards.
DEFAULT_SCHEDULE: dict[str, Any] = {
    "schedules": [
        {
            "name": "Weekdays",
            "timing": {"from": "09:00", "to": "17:00"},
            "days": {"0": False, "1": True, "2": True, "3": True, "4": True, "5": True, "6": False},
            "timezone": "America/Chicago",
        }
    ]
}
COUNTS = ("leads_uploaded", "in_blocklist", "duplicated_leads", "skipped_count", "invalid_email_count")


@dataclass
class AddLeadsResult:
    """Instantly's counts, summed over the chunks of one add_leads call."""

    leads_uploaded: int = 0
    in_blocklist: int = 0
    duplicated_leads: int = 0
    skipped_count: int = 0
    invalid_email_count: int = 0
    created_leads: list[dict[str, Any]] = field(default_factory=list)

    def add(self, answer: dict[str, Any]) -> None:
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + int(answer.get(name) or 0))
        self.created_leads.extend(answer.get("created_leads") or [])


class InstantlyClient(ProviderClient):
    service = "instantly"

    def create_campaign(self, *, name: str) -> str:
        body = self.request("POST", f"{API}/campaigns", json={"name": name, "campaign_schedule": DEFAULT_SCHEDULE})
        if not body.get("id"):
            raise ServerError(self.service, "the created campaign has no id")
        return str(body["id"])

    def add_leads(self, *, campaign_id: str, leads: list[dict[str, Any]]) -> AddLeadsResult:
        result = AddLeadsResult()
        for start in range(0, len(leads), MAX_LEADS_PER_CALL):
            chunk = leads[start : start + MAX_LEADS_PER_CALL]
            payload = {"campaign_id": campaign_id, "skip_if_in_campaign": True, "leads": chunk}
            result.add(self.request("POST", f"{API}/leads/add", json=payload))
        return result

    def campaign_analytics(self, *, campaign_id: str) -> dict[str, Any]:
        """Instantly's analytics row for the campaign ({} before it has any)."""
        body = self.request("GET", f"{API}/campaigns/analytics", params={"id": campaign_id})
        rows = body if isinstance(body, list) else [body]
        matching = [row for row in rows if isinstance(row, dict) and row.get("campaign_id") in (None, campaign_id)]
        return matching[0] if matching else {}
