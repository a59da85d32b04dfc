"""OpenAI and Perplexity share the chat-completions client; each is exercised at its own path."""

import pytest

from integrations.errors import QuotaExhaustedError, ServerError
from integrations.openai import OpenAIClient
from integrations.perplexity import PerplexityClient

LEAD = {"first_name": "Lee", "last_name": "Kim", "title": "CTO", "company": "Acme", "company_domain": "acme.example"}
CLIENTS = [(OpenAIClient, "/v1/chat/completions"), (PerplexityClient, "/chat/completions")]


def completion(text: str) -> dict:
    return {"id": "c1", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def quota_error(code: str) -> dict:
    return {"error": {"message": f"{code} happened", "type": code, "code": code}}


@pytest.fixture(params=CLIENTS, ids=["openai", "perplexity"])
def chat(request):
    return request.param


def test_it_asks_the_model_about_the_lead_and_returns_one_line(chat, httpserver, client_for):
    cls, path = chat
    httpserver.expect_request(path, method="POST", headers={"Authorization": "Bearer test-key"}).respond_with_json(
        completion('"Congrats on Acme\'s new platform launch, Lee." [1]\n\nSecond paragraph.')
    )
    line = client_for(cls, model="small-model").personalize(LEAD)
    assert line == "Congrats on Acme's new platform launch, Lee."
    body = httpserver.log[0][0].get_json()
    assert body["model"] == "small-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Title: CTO" in body["messages"][1]["content"]
    assert "Company: Acme" in body["messages"][1]["content"]


def test_it_uses_the_model_from_settings(chat, httpserver, settings):
    cls, path = chat
    settings.PROVIDERS = {
        **settings.PROVIDERS,
        cls.service: {"api_key": "test-key", "base_url": httpserver.url_for("/"), "model": "configured"},
    }
    httpserver.expect_request(path).respond_with_json(completion("Hello."))
    cls.from_settings().personalize(LEAD)
    assert httpserver.log[0][0].get_json()["model"] == "configured"


def test_it_raises_server_error_on_an_empty_completion(chat, httpserver, client_for):
    cls, path = chat
    httpserver.expect_request(path).respond_with_json({"choices": []})
    with pytest.raises(ServerError):
        client_for(cls).personalize(LEAD)


def test_it_trips_at_once_on_insufficient_quota_without_retrying(httpserver, client_for):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        quota_error("insufficient_quota"), status=429, headers={"Retry-After": "1"}
    )
    with pytest.raises(QuotaExhaustedError) as caught:
        client_for(OpenAIClient).personalize(LEAD)
    assert caught.value.trips_immediately and caught.value.counts_for_breaker
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "slow_down"])
def test_it_waits_out_a_rate_limit_or_slow_down_429(httpserver, client_for, waits, code):
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(
        quota_error(code), status=429, headers={"Retry-After": "0.03"}
    )
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(completion("Hello."))
    assert client_for(OpenAIClient).personalize(LEAD) == "Hello."
    assert waits == [0.03]


def test_it_retries_server_is_overloaded_then_raises_server_error(httpserver, client_for):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "That model is currently overloaded", "code": "server_is_overloaded"}}, status=503
    )
    with pytest.raises(ServerError, match="overloaded"):
        client_for(OpenAIClient).personalize(LEAD)
    assert len(httpserver.log) == 3
