import pytest

from integrations.apollo import ApolloClient
from integrations.perplexity import PerplexityClient
from integrations.providers import get_enricher, get_provider
from integrations.sandbox import (
    ApolloSandbox,
    InstantlySandbox,
    MillionVerifierSandbox,
    OpenAISandbox,
    PerplexitySandbox,
)


@pytest.fixture
def keyed(settings):
    def set_key(service: str, key: str = "live-key") -> None:
        settings.PROVIDERS = {**settings.PROVIDERS, service: {**settings.PROVIDERS[service], "api_key": key}}

    for service in settings.PROVIDERS:
        set_key(service, "")
    return set_key


def test_it_answers_with_the_sandbox_when_no_key_is_configured(keyed):
    assert isinstance(get_provider("apollo"), ApolloSandbox)
    assert isinstance(get_provider("millionverifier"), MillionVerifierSandbox)
    assert isinstance(get_provider("openai"), OpenAISandbox)
    assert isinstance(get_provider("perplexity"), PerplexitySandbox)
    assert isinstance(get_provider("instantly"), InstantlySandbox)


def test_it_answers_with_the_real_client_when_a_key_is_configured(keyed, settings):
    keyed("apollo")
    settings.PROVIDER_TIMEOUT_SECONDS = 7.5
    with get_provider("apollo") as client:
        assert isinstance(client, ApolloClient)
        assert client.api_key == "live-key"
        assert client.timeout == 7.5
        assert str(client._http.base_url).startswith(settings.PROVIDERS["apollo"]["base_url"])


def test_it_picks_the_enricher_from_settings(keyed, settings):
    settings.ENRICHMENT_PROVIDER = "perplexity"
    assert isinstance(get_enricher(), PerplexitySandbox)
    keyed("perplexity")
    enricher = get_enricher()
    assert isinstance(enricher, PerplexityClient)
    assert enricher.model == settings.PROVIDERS["perplexity"]["model"]


def test_it_refuses_an_unknown_service():
    with pytest.raises(ValueError, match="Unknown provider"):
        get_provider("smtp")
