import time

import pytest

from integrations.errors import SandboxInjectedFailure
from integrations.millionverifier import email_status_for
from integrations.models import SandboxSetting
from integrations.sandbox import (
    ApolloSandbox,
    InstantlySandbox,
    MillionVerifierSandbox,
    OpenAISandbox,
    PerplexitySandbox,
    failure_injected,
)

pytestmark = pytest.mark.django_db

FILTERS = {"person_titles": ["CTO"], "person_locations": ["Germany"]}


def all_people(filters=FILTERS):
    apollo = ApolloSandbox()
    return [lead for page in range(1, 51) for lead in apollo.fetch_leads(filters=filters, page=page).leads]


class TestApolloSandbox:
    def test_it_returns_the_same_people_for_the_same_search_and_page(self):
        first = ApolloSandbox().fetch_leads(filters=FILTERS, page=3, per_page=20)
        again = ApolloSandbox().fetch_leads(filters=dict(reversed(FILTERS.items())), page=3, per_page=20)
        assert first == again
        assert len(first.leads) == 20 and first.total == 5000 and first.has_more

    def test_it_returns_other_people_on_another_page_or_search(self):
        page_one = ApolloSandbox().fetch_leads(filters=FILTERS, page=1).leads
        page_two = ApolloSandbox().fetch_leads(filters=FILTERS, page=2).leads
        other = ApolloSandbox().fetch_leads(filters={"q_keywords": "saas"}, page=1).leads
        assert not {lead.email for lead in page_one} & {lead.email for lead in page_two}
        assert [lead.email for lead in page_one] != [lead.email for lead in other]

    def test_it_has_no_more_after_the_last_page(self):
        last = ApolloSandbox().fetch_leads(filters=FILTERS, page=50)
        assert len(last.leads) == 100 and not last.has_more

    def test_it_finds_nobody_when_the_keywords_say_so(self):
        page = ApolloSandbox().fetch_leads(filters={"q_keywords": "Nobody at all"}, page=1)
        assert page.leads == [] and page.total == 0 and not page.has_more

    def test_it_makes_realistic_unique_people_at_their_company_domain(self):
        people = all_people()
        assert len({lead.email for lead in people}) == 5000
        for lead in people[:50]:
            assert lead.email.endswith("@" + lead.company_domain)
            assert lead.first_name and lead.last_name and lead.company
            assert lead.title == "CTO"
            assert lead.linkedin_url.startswith("https://www.linkedin.com/in/")
            assert lead.source_id

    def test_about_one_in_ten_people_has_a_bad_email(self):
        bad = sum(lead.email.startswith("bad.") for lead in all_people())
        assert 400 <= bad <= 600


class TestMillionVerifierSandbox:
    def test_it_calls_bad_addresses_invalid(self):
        result = MillionVerifierSandbox().verify("bad.lee.kim@acme.example")
        assert result.result == "invalid"
        assert email_status_for(result.result) == "invalid"

    def test_it_calls_about_five_percent_catch_all_and_the_rest_ok(self):
        verifier = MillionVerifierSandbox()
        results = [verifier.verify(f"lee{n}@acme.example").result for n in range(1000)]
        assert set(results) == {"ok", "catch_all"}
        assert 20 <= results.count("catch_all") <= 90
        assert results == [verifier.verify(f"lee{n}@acme.example").result for n in range(1000)]

    def test_it_agrees_with_the_apollo_sandbox_on_bad_emails(self):
        people = ApolloSandbox().fetch_leads(filters=FILTERS, page=1).leads
        verifier = MillionVerifierSandbox()
        for lead in people:
            assert (verifier.verify(lead.email).result == "invalid") == lead.email.startswith("bad.")


class TestEnrichmentSandboxes:
    @pytest.mark.parametrize("sandbox", [OpenAISandbox, PerplexitySandbox])
    def test_it_writes_a_deterministic_line_about_the_company_and_title(self, sandbox):
        lead = {"email": "lee@acme.example", "title": "VP Sales", "company": "Acme"}
        line = sandbox().personalize(lead)
        assert "Acme" in line and "VP Sales" in line
        assert sandbox().personalize(lead) == line


class TestInstantlySandbox:
    def test_it_gives_a_campaign_a_deterministic_id(self):
        assert InstantlySandbox().create_campaign(name="Q3") == InstantlySandbox().create_campaign(name="Q3")
        assert InstantlySandbox().create_campaign(name="Q3") != InstantlySandbox().create_campaign(name="Q4")

    def test_it_counts_uploaded_duplicated_and_invalid_leads(self):
        leads = [
            {"email": "a@acme.example"},
            {"email": "A@acme.example"},
            {"email": "nope"},
            {"email": "b@acme.example"},
        ]
        result = InstantlySandbox().add_leads(campaign_id="c1", leads=leads)
        assert (result.leads_uploaded, result.duplicated_leads, result.invalid_email_count) == (2, 1, 1)
        assert [lead["email"] for lead in result.created_leads] == ["a@acme.example", "b@acme.example"]

    def test_it_reports_consistent_analytics_fixed_per_campaign(self):
        stats = InstantlySandbox().campaign_analytics(campaign_id="c1")
        assert stats == InstantlySandbox().campaign_analytics(campaign_id="c1")
        assert stats != InstantlySandbox().campaign_analytics(campaign_id="c2")
        assert stats["contacted_count"] <= stats["leads_count"]
        assert stats["open_count"] <= stats["emails_sent_count"]
        assert stats["reply_count"] <= stats["contacted_count"]


class TestFailureInjection:
    def test_a_service_named_in_sandbox_fail_fails_every_call(self, settings):
        settings.SANDBOX_FAIL = ["millionverifier"]
        with pytest.raises(SandboxInjectedFailure) as caught:
            MillionVerifierSandbox().verify("lee@acme.example")
        assert caught.value.counts_for_breaker and caught.value.service == "millionverifier"
        assert ApolloSandbox().fetch_leads(filters=FILTERS, page=1).leads

    def test_an_operator_toggle_fails_every_call_until_switched_off(self):
        SandboxSetting.objects.filter(service="instantly").update(fail=True)
        with pytest.raises(SandboxInjectedFailure):
            InstantlySandbox().create_campaign(name="c1")
        SandboxSetting.objects.filter(service="instantly").update(fail=False)
        assert InstantlySandbox().create_campaign(name="c1")

    def test_it_tells_the_smtp_path_when_failure_is_injected(self, settings):
        assert not failure_injected("smtp")
        SandboxSetting.objects.filter(service="smtp").update(fail=True)
        assert failure_injected("smtp")
        SandboxSetting.objects.filter(service="smtp").update(fail=False)
        settings.SANDBOX_FAIL = ["smtp"]
        assert failure_injected("smtp")

    def test_it_still_works_when_a_services_row_is_missing(self):
        SandboxSetting.objects.filter(service="openai").delete()
        assert OpenAISandbox().personalize({"company": "Acme", "title": "CTO"})
        assert not failure_injected("openai")

    def test_a_per_service_latency_overrides_the_default(self, settings):
        settings.SANDBOX_LATENCY_MS = 0
        SandboxSetting.objects.filter(service="openai").update(latency_ms=60)
        started = time.monotonic()
        OpenAISandbox().personalize({"company": "Acme", "title": "CTO"})
        assert time.monotonic() - started >= 0.06
