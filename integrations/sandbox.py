"""Sandbox providers, used when a service has no API key (the embedded default).

Each sandbox has the real client's method signatures and answers deterministically: the same
inputs always give the same people, verdicts and numbers, seeded from a hash of the inputs. Every
call first waits the configured latency, then fails with SandboxInjectedFailure when failure is
injected (settings.SANDBOX_FAIL or the SandboxSetting admin toggle), so a demo can trip a breaker.

Generated companies live under the reserved .example TLD, so nothing sent to a sandbox lead can
reach a real mailbox.
"""

import hashlib
import json
import random
import threading
import uuid
from time import monotonic, sleep
from typing import Any, ClassVar, Self

from django.conf import settings

from .apollo import MAX_PER_PAGE, LeadData, LeadsPage, check_page, has_more_pages
from .errors import SandboxInjectedFailure
from .instantly import AddLeadsResult
from .millionverifier import Result, VerificationResult
from .models import SandboxSetting

APOLLO_TOTAL = 5000
BAD_EMAIL_SHARE = 0.10
CATCH_ALL_PERCENT = 5
CREDITS = 100_000
NAMESPACE = uuid.UUID("7f1f4a52-6c1e-4d8e-9a51-3b0c2f7d9e10")

FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Greta", "Hannah", "Ivan", "Julia",
    "Karim", "Lena", "Marco", "Nina", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tara",
    "Uwe", "Vera", "William", "Xenia", "Yusuf", "Zoe", "Aiko", "Bruno", "Chloe", "Diego",
    "Emma", "Farah", "Georg", "Ines", "Jonas", "Katja", "Lucas", "Maya", "Noah", "Olga",
)  # fmt: skip
LAST_NAMES = (
    "Schmidt", "Novak", "Rossi", "Garcia", "Kowalski", "Jensen", "Dubois", "Silva", "Murphy", "Weber",
    "Berg", "Costa", "Fischer", "Hansen", "Ivanova", "Kaya", "Lindqvist", "Meyer", "Nagy", "Okafor",
    "Petrov", "Quinn", "Richter", "Santos", "Tanaka", "Ueda", "Vogel", "Wagner", "Yilmaz", "Zimmer",
    "Andersen", "Bauer", "Clarke", "Dietrich", "Evans", "Ferrari", "Gruber", "Huber", "Keller", "Lange",
)  # fmt: skip
TITLES = (
    "CTO", "VP Engineering", "Head of Engineering", "Engineering Manager", "Chief Executive Officer",
    "Founder", "VP Sales", "Head of Sales", "Head of Marketing", "Head of Operations", "Director of IT",
    "Head of Product",
)  # fmt: skip
COMPANY_PREFIXES = (
    "Northwind", "Bluefin", "Brightlane", "Cobalt", "Copperleaf", "Evergreen", "Foxglove", "Granite",
    "Harbor", "Ironbark", "Juniper", "Keystone", "Lumen", "Meridian", "Nimbus", "Orchard", "Pinecrest",
    "Quartz", "Redwood", "Silverline",
)  # fmt: skip
COMPANY_SUFFIXES = (
    "Analytics", "Labs", "Systems", "Software", "Logistics", "Health", "Robotics", "Energy", "Capital",
    "Media", "Cloud", "Security", "Foods", "Mobility", "Networks", "Studio", "Works", "Dynamics",
    "Partners", "Data",
)  # fmt: skip
COMPANIES = tuple(f"{prefix} {suffix}" for prefix in COMPANY_PREFIXES for suffix in COMPANY_SUFFIXES)
# Person i of a search is combination (offset + i * STEP) mod PEOPLE of company, first and last
# name: STEP is coprime with PEOPLE, so no two people of one search share an email.
PEOPLE = len(COMPANIES) * len(FIRST_NAMES) * len(LAST_NAMES)
STEP = 104_729
PERSONALISATION_LINES = (
    "Saw how {company} has been growing lately and thought it was worth reaching out to its {title}.",
    "As {title} at {company}, you are probably weighing how to scale outreach without adding headcount.",
    "{company} keeps coming up among teams that ship fast, so I wanted to write to its {title} directly.",
)


def digest(*parts: object) -> int:
    """A stable 64-bit number from the parts (unlike hash(), the same in every process)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


# The operators' switches (SandboxSetting rows), read at most every SANDBOX_CONTROLS_TTL_SECONDS
# per process: a sandbox answering thousands of calls a second must not query the database for
# each. Threads that run provider calls for the engine (campaigns/batches.py) never query at all
# (cache_only_in_this_thread): they hold no database connection; the engine's coordinating thread
# refreshes the switches for them.
_controls_lock = threading.Lock()
_controls: dict[str, tuple[bool, int | None]] = {}
_controls_loaded_at = float("-inf")
_thread = threading.local()


def cache_only_in_this_thread() -> None:
    """Mark the current thread as one that must never touch the database (a call executor)."""
    _thread.cache_only = True


def sandbox_controls_refresh(*, force: bool = False) -> None:
    """Reload the switches if they are older than the TTL (or `force`); no-op in cache-only threads."""
    global _controls_loaded_at
    if getattr(_thread, "cache_only", False):
        return
    if not force and monotonic() - _controls_loaded_at < settings.SANDBOX_CONTROLS_TTL_SECONDS:
        return
    rows = SandboxSetting.objects.values_list("service", "fail", "latency_ms")
    with _controls_lock:
        _controls.clear()
        _controls.update({service: (fail, latency_ms) for service, fail, latency_ms in rows})
        _controls_loaded_at = monotonic()


def sandbox_controls_forget() -> None:
    """Drop the cached switches (an operator just changed them in this process)."""
    global _controls_loaded_at
    _controls_loaded_at = float("-inf")


def sandbox_controls(service: str) -> tuple[bool, int]:
    """(fail, latency in ms) of a service's sandbox: the operator's switch or SANDBOX_FAIL, and
    the row's latency or SANDBOX_LATENCY_MS."""
    sandbox_controls_refresh()
    fail, latency_ms = _controls.get(service, (False, None))
    latency_ms = settings.SANDBOX_LATENCY_MS if latency_ms is None else latency_ms
    return fail or service in settings.SANDBOX_FAIL, latency_ms


def failure_injected(service: str) -> bool:
    """Whether the sandbox of `service` (also "smtp") must fail every call right now."""
    return sandbox_controls(service)[0]


class Sandbox:
    service: ClassVar[str]

    def call(self) -> None:
        """Wait the configured latency, then fail if failure is injected."""
        fail, latency_ms = sandbox_controls(self.service)
        if latency_ms:
            sleep(latency_ms / 1000)
        if fail:
            raise SandboxInjectedFailure(self.service, "failure injected in the sandbox", 503)

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ApolloSandbox(Sandbox):
    """APOLLO_TOTAL people for any search, except none when q_keywords mentions "nobody"."""

    service = "apollo"

    def fetch_leads(self, *, filters: dict[str, Any], page: int, per_page: int = MAX_PER_PAGE) -> LeadsPage:
        check_page(page, per_page)
        self.call()
        if "nobody" in str(filters.get("q_keywords", "")).lower():
            return LeadsPage(leads=[], total=0, has_more=False)
        seed = digest(json.dumps(filters, sort_keys=True, default=str))
        start = (page - 1) * per_page
        leads = [self._person(seed, index, filters) for index in range(start, min(start + per_page, APOLLO_TOTAL))]
        has_more = has_more_pages(page=page, per_page=per_page, total=APOLLO_TOTAL)
        return LeadsPage(leads=leads, total=APOLLO_TOTAL, has_more=has_more)

    def _person(self, seed: int, index: int, filters: dict[str, Any]) -> LeadData:
        rng = random.Random(f"{seed}:{index}")
        n = (seed + index * STEP) % PEOPLE
        company = COMPANIES[n % len(COMPANIES)]
        n //= len(COMPANIES)
        first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n // len(FIRST_NAMES)]
        domain = company.replace(" ", "").lower() + ".example"
        local = f"{first}.{last}".lower()
        if rng.random() < BAD_EMAIL_SHARE:
            local = f"bad.{local}"
        titles = filters.get("person_titles")
        if not isinstance(titles, list) or not titles:
            titles = TITLES
        return LeadData(
            email=f"{local}@{domain}",
            first_name=first,
            last_name=last,
            title=rng.choice(titles),
            company=company,
            company_domain=domain,
            linkedin_url=f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{rng.randrange(16**6):06x}",
            phone=f"+1 555 {rng.randrange(100, 1000)} {rng.randrange(1000, 10000)}",
            source_id=f"sandbox-{seed:016x}-{index}",
        )


class MillionVerifierSandbox(Sandbox):
    """invalid for addresses whose local part starts with "bad.", catch_all for ~5%, ok otherwise."""

    service = "millionverifier"

    def verify(self, email: str) -> VerificationResult:
        self.call()
        address = email.strip().lower()
        result: Result
        if "@" not in address or address.startswith("bad."):
            result, quality, subresult, code = "invalid", "bad", "mailbox_not_found", 6
        elif digest("millionverifier", address) % 100 < CATCH_ALL_PERCENT:
            result, quality, subresult, code = "catch_all", "risky", "catch_all", 2
        else:
            result, quality, subresult, code = "ok", "good", "ok", 1
        raw = {
            "email": email,
            "quality": quality,
            "result": result,
            "resultcode": code,
            "subresult": subresult,
            "free": False,
            "role": False,
            "credits": CREDITS,
            "executiontime": 0,
        }
        return VerificationResult(result=result, quality=quality, subresult=subresult, credits=CREDITS, raw=raw)


class ChatSandbox(Sandbox):
    def personalize(self, lead: dict[str, Any]) -> str:
        self.call()
        company = lead.get("company") or "your company"
        title = lead.get("title") or "team lead"
        pick = digest(self.service, company, title, lead.get("email")) % len(PERSONALISATION_LINES)
        return PERSONALISATION_LINES[pick].format(company=company, title=title)


class OpenAISandbox(ChatSandbox):
    service = "openai"


class PerplexitySandbox(ChatSandbox):
    service = "perplexity"


class InstantlySandbox(Sandbox):
    service = "instantly"

    def create_campaign(self, *, name: str) -> str:
        self.call()
        return str(uuid.uuid5(NAMESPACE, name))

    def add_leads(self, *, campaign_id: str, leads: list[dict[str, Any]]) -> AddLeadsResult:
        self.call()
        result = AddLeadsResult()
        seen: set[str] = set()
        for index, lead in enumerate(leads):
            email = str(lead.get("email") or "").strip().lower()
            if "@" not in email:
                result.invalid_email_count += 1
            elif email in seen:
                result.duplicated_leads += 1
            else:
                seen.add(email)
                result.leads_uploaded += 1
                lead_id = str(uuid.uuid5(NAMESPACE, f"{campaign_id}:{email}"))
                result.created_leads.append({"id": lead_id, "email": email, "index": index})
        return result

    def campaign_analytics(self, *, campaign_id: str) -> dict[str, Any]:
        """Plausible, consistent numbers (opens <= sent, replies <= contacted), fixed per campaign."""
        self.call()
        rng = random.Random(digest("instantly", campaign_id))
        leads = rng.randrange(50, 500)
        contacted = leads * rng.randrange(60, 101) // 100
        sent = contacted + contacted * rng.randrange(0, 150) // 100
        return {
            "campaign_id": campaign_id,
            "campaign_status": 1,
            "leads_count": leads,
            "contacted_count": contacted,
            "emails_sent_count": sent,
            "open_count": sent * rng.randrange(30, 61) // 100,
            "reply_count": contacted * rng.randrange(2, 9) // 100,
            "link_click_count": sent * rng.randrange(1, 6) // 100,
            "bounced_count": sent * rng.randrange(0, 4) // 100,
            "unsubscribed_count": contacted * rng.randrange(0, 3) // 100,
            "completed_count": contacted * rng.randrange(0, 50) // 100,
        }
