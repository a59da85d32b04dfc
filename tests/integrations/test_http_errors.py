"""Every real client maps the same HTTP failures to the same typed errors, over real HTTP."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from integrations.apollo import ApolloClient
from integrations.errors import (
    AuthError,
    BadRequestError,
    ProviderConnectionError,
    ProviderTimeout,
    RateLimitedError,
    ServerError,
)
from integrations.instantly import InstantlyClient
from integrations.millionverifier import MillionVerifierClient
from integrations.openai import OpenAIClient
from integrations.perplexity import PerplexityClient

LEAD = {"first_name": "Lee", "title": "CTO", "company": "Acme"}


def completion(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@dataclass
class Endpoint:
    client: type
    method: str
    path: str
    call: Callable[[Any], Any]
    ok_body: Any


ENDPOINTS = {
    "apollo": Endpoint(
        ApolloClient,
        "POST",
        "/api/v1/mixed_people/api_search",
        lambda client: client.fetch_leads(filters={"person_titles": ["cto"]}, page=1),
        {"people": [], "total_entries": 0},
    ),
    "millionverifier": Endpoint(
        MillionVerifierClient,
        "GET",
        "/api/v3/",
        lambda client: client.verify("lee@acme.example"),
        {"email": "lee@acme.example", "result": "ok", "quality": "good", "subresult": "ok", "credits": 10},
    ),
    "openai": Endpoint(
        OpenAIClient, "POST", "/v1/chat/completions", lambda client: client.personalize(LEAD), completion("Hi.")
    ),
    "perplexity": Endpoint(
        PerplexityClient, "POST", "/chat/completions", lambda client: client.personalize(LEAD), completion("Hi.")
    ),
    "instantly": Endpoint(
        InstantlyClient, "POST", "/api/v2/campaigns", lambda client: client.create_campaign(name="Q3"), {"id": "c-1"}
    ),
}


@pytest.fixture(params=list(ENDPOINTS.values()), ids=list(ENDPOINTS))
def endpoint(request) -> Endpoint:
    return request.param


@pytest.fixture
def expect(httpserver, endpoint):
    def expect(**kwargs):
        return httpserver.expect_ordered_request(endpoint.path, method=endpoint.method, **kwargs)

    return expect


def test_it_succeeds_on_a_2xx(endpoint, expect, client_for, httpserver):
    expect().respond_with_json(endpoint.ok_body)
    result = endpoint.call(client_for(endpoint.client))
    httpserver.check_assertions()  # the one expected request was made, and nothing else
    assert len(httpserver.log) == 1 and httpserver.log[0][1].status_code == 200
    assert result is not None and result != {}  # the 2xx body was read into the client's answer


def test_it_sends_the_api_key_and_a_user_agent(endpoint, expect, client_for, httpserver):
    expect().respond_with_json(endpoint.ok_body)
    endpoint.call(client_for(endpoint.client))
    request, _ = httpserver.log[0]
    sent_key = (
        request.headers.get("Authorization", "") + request.headers.get("x-api-key", "") + request.args.get("api", "")
    )
    assert "test-key" in sent_key
    assert request.headers["User-Agent"].startswith("campaign-backoffice/")


def test_it_raises_auth_error_on_a_401_without_retrying(endpoint, expect, client_for, httpserver):
    expect().respond_with_json({"error": "Invalid API key"}, status=401)
    with pytest.raises(AuthError) as caught:
        endpoint.call(client_for(endpoint.client))
    assert caught.value.status_code == 401
    assert caught.value.counts_for_breaker
    assert len(httpserver.log) == 1


def test_it_raises_auth_error_without_calling_when_no_key_is_configured(endpoint, client_for, httpserver):
    with pytest.raises(AuthError):
        endpoint.call(client_for(endpoint.client, api_key=""))
    assert httpserver.log == []


def test_it_retries_a_429_after_retry_after(endpoint, expect, client_for, settings, waits):
    settings.PROVIDER_RETRY_AFTER_MAX_SECONDS = 30
    expect().respond_with_json({"error": "slow down"}, status=429, headers={"Retry-After": "2"})
    expect().respond_with_json(endpoint.ok_body)
    endpoint.call(client_for(endpoint.client))
    assert waits == [2.0]


def test_it_caps_a_long_retry_after(endpoint, expect, client_for, waits):
    expect().respond_with_json({"error": "slow down"}, status=429, headers={"Retry-After": "3600"})
    expect().respond_with_json(endpoint.ok_body)
    endpoint.call(client_for(endpoint.client))
    assert waits == [0.05]


def test_it_raises_rate_limited_once_its_retries_run_out(endpoint, expect, client_for, httpserver):
    for _ in range(3):
        expect().respond_with_json({"error": "slow down"}, status=429, headers={"Retry-After": "7"})
    with pytest.raises(RateLimitedError) as caught:
        endpoint.call(client_for(endpoint.client))
    assert caught.value.retry_after == 7.0
    assert caught.value.counts_for_breaker
    assert len(httpserver.log) == 3


def test_it_retries_a_5xx_with_exponential_backoff(endpoint, expect, client_for, waits):
    expect().respond_with_json({"error": "boom"}, status=502)
    expect().respond_with_json({"error": "boom"}, status=500)
    expect().respond_with_json(endpoint.ok_body)
    endpoint.call(client_for(endpoint.client))
    assert waits == [0.01, 0.02]


def test_it_raises_server_error_when_5xx_persists(endpoint, expect, client_for, httpserver):
    for _ in range(3):
        expect().respond_with_data("<html>Bad gateway</html>", status=502)
    with pytest.raises(ServerError) as caught:
        endpoint.call(client_for(endpoint.client))
    assert caught.value.status_code == 502
    assert caught.value.counts_for_breaker
    assert len(httpserver.log) == 3


def test_it_raises_provider_timeout_when_the_answer_is_late(endpoint, expect, client_for, late_answer):
    expect().respond_with_handler(late_answer)
    with pytest.raises(ProviderTimeout) as caught:
        endpoint.call(client_for(endpoint.client, timeout=0.1))
    assert caught.value.counts_for_breaker


def test_it_raises_connection_error_when_nothing_listens(endpoint):
    client = endpoint.client(api_key="test-key", base_url="http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(ProviderConnectionError) as caught:
        endpoint.call(client)
    assert caught.value.counts_for_breaker


@pytest.mark.parametrize("status", [400, 404, 422])
def test_it_raises_bad_request_that_does_not_count_for_the_breaker(endpoint, expect, client_for, httpserver, status):
    expect().respond_with_json({"message": "email is not valid"}, status=status)
    with pytest.raises(BadRequestError) as caught:
        endpoint.call(client_for(endpoint.client))
    assert caught.value.status_code == status
    assert not caught.value.counts_for_breaker
    assert "email is not valid" in str(caught.value)
    assert len(httpserver.log) == 1


def test_it_raises_server_error_when_a_success_is_not_json(endpoint, expect, client_for):
    expect().respond_with_data("<html>maintenance</html>", status=200, content_type="text/html")
    with pytest.raises(ServerError):
        endpoint.call(client_for(endpoint.client))
