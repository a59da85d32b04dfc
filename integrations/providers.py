"""Which provider answers: the real client when its API key is configured, the sandbox otherwise."""

from typing import Literal, cast, overload

from django.conf import settings

from .apollo import ApolloClient
from .instantly import InstantlyClient
from .millionverifier import MillionVerifierClient
from .openai import OpenAIClient
from .perplexity import PerplexityClient
from .sandbox import (
    ApolloSandbox,
    InstantlySandbox,
    MillionVerifierSandbox,
    OpenAISandbox,
    PerplexitySandbox,
)

LeadSource = ApolloClient | ApolloSandbox
Verifier = MillionVerifierClient | MillionVerifierSandbox
Enricher = OpenAIClient | PerplexityClient | OpenAISandbox | PerplexitySandbox
SendingChannel = InstantlyClient | InstantlySandbox
Provider = LeadSource | Verifier | Enricher | SendingChannel

REAL = {
    "apollo": ApolloClient,
    "millionverifier": MillionVerifierClient,
    "openai": OpenAIClient,
    "perplexity": PerplexityClient,
    "instantly": InstantlyClient,
}
SANDBOXES = {
    "apollo": ApolloSandbox,
    "millionverifier": MillionVerifierSandbox,
    "openai": OpenAISandbox,
    "perplexity": PerplexitySandbox,
    "instantly": InstantlySandbox,
}


@overload
def get_provider(service: Literal["apollo"]) -> LeadSource: ...
@overload
def get_provider(service: Literal["millionverifier"]) -> Verifier: ...
@overload
def get_provider(service: Literal["openai", "perplexity"]) -> Enricher: ...
@overload
def get_provider(service: Literal["instantly"]) -> SendingChannel: ...
@overload
def get_provider(service: str) -> Provider: ...
def get_provider(service: str) -> Provider:
    """A new client (close it, or use it in a with block) or sandbox for `service`."""
    if service not in REAL:
        raise ValueError(f"Unknown provider {service!r}; known: {', '.join(REAL)}")
    if settings.PROVIDERS[service]["api_key"]:
        return cast(Provider, REAL[service].from_settings())
    return cast(Provider, SANDBOXES[service]())


def get_enricher() -> Enricher:
    """The enrichment provider chosen by settings.ENRICHMENT_PROVIDER (openai or perplexity)."""
    return get_provider(settings.ENRICHMENT_PROVIDER)  # type: ignore[return-value]
