"""/metrics: Prometheus' text format with the product's own figures, behind a token unless DEBUG."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.breakers import breaker_trip
from tests.factories import JobFactory


def samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def scrape(client, settings):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    settings.METRICS_CACHE_SECONDS = 0

    def get():
        answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789")
        assert answer.status_code == 200
        assert answer["Content-Type"].startswith("text/plain; version=")
        return samples(answer.content.decode())

    return get


def test_metrics_show_the_queue_pausing_and_the_breaker_that_did_it(scrape, running_campaign):
    before = scrape()
    assert before[("cbo_queue_paused", ())] == 0
    breaker_trip(service="millionverifier")
    after = scrape()
    assert after[("cbo_queue_paused", ())] == 1
    assert after[("cbo_breaker_state", (("service", "millionverifier"), ("state", "open")))] == 1
    assert after[("cbo_breaker_state", (("service", "apollo"), ("state", "closed")))] == 1
    assert after[("cbo_breaker_failures", (("service", "millionverifier"),))] == 1
    assert after[("cbo_campaigns", (("status", "paused"),))] == 1


def test_metrics_count_jobs_by_type_and_status_and_the_webhooks_and_the_pixel(scrape, running_campaign):
    JobFactory(campaign=running_campaign, job_type="verify_email", status="pending")
    JobFactory(campaign=running_campaign, job_type="verify_email", status="completed")
    figures = scrape()
    assert figures[("cbo_jobs", (("status", "pending"), ("type", "verify_email")))] == 1
    assert figures[("cbo_jobs", (("status", "completed"), ("type", "verify_email")))] == 1
    assert figures[("cbo_webhook_deliveries", (("status", "failed"),))] == 0
    assert figures[("cbo_pixel_opens_buffered", ())] == 0
    assert ("cbo_emails_sent_total", ()) in figures and ("cbo_pixel_opens_drained_total", ()) in figures


def test_metrics_are_refused_without_the_token_in_production(client, db, settings):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_staff_may_read_them_in_the_browser(admin_client_logged_in, settings):
    settings.METRICS_TOKEN = ""
    assert admin_client_logged_in.get("/metrics").status_code == 200
