import pytest

from integrations.errors import AuthError, QuotaExhaustedError, ServerError
from integrations.millionverifier import MillionVerifierClient, VerificationResult, email_status_for

OK = {
    "email": "lee@acme.example",
    "quality": "good",
    "result": "ok",
    "resultcode": 1,
    "subresult": "ok",
    "free": False,
    "role": False,
    "credits": 4321,
    "executiontime": 1,
}


def test_it_verifies_an_address_with_the_key_in_the_query(httpserver, client_for):
    httpserver.expect_request(
        "/api/v3/",
        method="GET",
        query_string={"api": "test-key", "email": "lee@acme.example", "timeout": "9"},
    ).respond_with_json(OK)
    result = client_for(MillionVerifierClient, timeout=10.0).verify("lee@acme.example")
    assert result == VerificationResult(result="ok", quality="good", subresult="ok", credits=4321, raw=OK)


def test_it_reads_an_unexpected_result_as_unknown(httpserver, client_for):
    httpserver.expect_request("/api/v3/").respond_with_json({**OK, "result": "something_new"})
    assert client_for(MillionVerifierClient).verify("lee@acme.example").result == "unknown"


def test_it_raises_quota_exhausted_on_insufficient_credits_as_a_status(httpserver, client_for):
    httpserver.expect_request("/api/v3/").respond_with_json({"error": "Insufficient credits"}, status=402)
    with pytest.raises(QuotaExhaustedError) as caught:
        client_for(MillionVerifierClient).verify("lee@acme.example")
    assert caught.value.trips_immediately
    assert len(httpserver.log) == 1


def test_it_raises_quota_exhausted_on_insufficient_credits_in_a_200_body(httpserver, client_for):
    httpserver.expect_request("/api/v3/").respond_with_json(
        {"email": "lee@acme.example", "result": "error", "credits": 0, "error": "Insufficient credits"}
    )
    with pytest.raises(QuotaExhaustedError) as caught:
        client_for(MillionVerifierClient).verify("lee@acme.example")
    assert caught.value.trips_immediately and caught.value.counts_for_breaker
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("message", ["Invalid API key", "IP address blocked"])
def test_it_raises_auth_error_on_a_key_or_ip_error_in_a_200_body(httpserver, client_for, message):
    httpserver.expect_request("/api/v3/").respond_with_json({"result": "error", "error": message})
    with pytest.raises(AuthError, match=message):
        client_for(MillionVerifierClient).verify("lee@acme.example")


def test_it_retries_an_internal_error_in_a_200_body_then_raises_server_error(httpserver, client_for):
    httpserver.expect_request("/api/v3/").respond_with_json({"result": "error", "error": "Internal error"})
    with pytest.raises(ServerError):
        client_for(MillionVerifierClient).verify("lee@acme.example")
    assert len(httpserver.log) == 3


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ("ok", "valid"),
        ("catch_all", "catch_all"),
        ("invalid", "invalid"),
        ("disposable", "invalid"),
        ("unknown", "unknown"),
    ],
)
def test_it_maps_results_to_lead_email_statuses(result, status):
    assert email_status_for(result) == status
