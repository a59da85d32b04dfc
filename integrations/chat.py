"""Chat completions, shared by OpenAI and Perplexity (whose API is OpenAI-compatible): one short
personalisation line per lead."""

import re
from typing import Any, ClassVar, Self

import httpx
from django.conf import settings

from .errors import ProviderError, QuotaExhaustedError, ServerError
from .http import ProviderClient

SYSTEM_PROMPT = (
    "You write the opening line of a short B2B cold email. Answer with one friendly sentence of at "
    "most 25 words about the person's role or company. No greeting, no sign-off, no quotation marks."
)
MAX_LINE_CHARS = 300
CITATION = re.compile(r"\s*\[\d+\]")


def lead_prompt(lead: dict[str, Any]) -> str:
    name = " ".join(part for part in (lead.get("first_name"), lead.get("last_name")) if part)
    fields = [
        ("Name", name),
        ("Title", lead.get("title")),
        ("Company", lead.get("company")),
        ("Website", lead.get("company_domain")),
    ]
    return "\n".join(f"{label}: {value}" for label, value in fields if value)


def clean_line(content: str) -> str:
    """The first non-empty line, without quotes or citation markers ([1]), clipped."""
    lines = [line.strip() for line in content.splitlines() if line.strip()]
    line = CITATION.sub("", lines[0] if lines else "").strip().strip("\"'“”").strip()
    return line[:MAX_LINE_CHARS]


class ChatCompletionsClient(ProviderClient):
    path: ClassVar[str]
    default_model: ClassVar[str]

    def __init__(self, api_key: str, base_url: str, timeout: float, model: str | None = None) -> None:
        super().__init__(api_key, base_url, timeout)
        self.model = model or self.default_model

    @classmethod
    def from_settings(cls) -> Self:
        conf = settings.PROVIDERS[cls.service]
        return cls(
            api_key=conf["api_key"],
            base_url=conf["base_url"],
            timeout=settings.PROVIDER_TIMEOUT_SECONDS,
            model=conf.get("model") or None,
        )

    def personalize(self, lead: dict[str, Any]) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": lead_prompt(lead)}]
        body = self.request("POST", self.path, json={"model": self.model, "messages": messages})
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ServerError(self.service, "the answer has no completion")
        line = clean_line(content or "")
        if not line:
            raise ServerError(self.service, "the completion is empty")
        return line

    def error_for(self, response: httpx.Response, body: Any) -> ProviderError | None:
        # A 429 comes in three kinds: rate_limit_exceeded and slow_down are waited out like any
        # 429, but insufficient_quota means no credit left, so retrying cannot help.
        error = body.get("error") if isinstance(body, dict) else None
        if (
            response.status_code == 429
            and isinstance(error, dict)
            and "insufficient_quota" in (error.get("code"), error.get("type"))
        ):
            return QuotaExhaustedError(self.service, str(error.get("message") or "insufficient_quota"), 429)
        return super().error_for(response, body)
