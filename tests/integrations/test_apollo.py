import pytest

from integrations.apollo import ApolloClient, LeadData, parse_search_url

SEARCH = "/api/v1/mixed_people/api_search"
BULK_MATCH = "/api/v1/people/bulk_match"


def match(person_id: str, email: str | None, **extra) -> dict:
    return {
        "id": person_id,
        "first_name": "Lee",
        "last_name": person_id.upper(),
        "title": "CTO",
        "email": email,
        "linkedin_url": f"http://www.linkedin.com/in/{person_id}",
        "organization": {"name": "Acme", "primary_domain": "acme.example"},
        "phone_numbers": [{"raw_number": "+49 30 1234", "sanitized_number": "+49301234"}],
        **extra,
    }


class TestParseSearchUrl:
    def test_it_turns_the_fragment_query_into_api_filters(self):
        url = (
            "https://app.apollo.io/#/people?page=2&sortByField=%5Bnone%5D&sortAscending=false"
            "&personTitles[]=cto&personTitles[]=vp%20engineering&personLocations[]=Germany"
            "&q_keywords=saas&includeSimilarTitles=true"
        )
        assert parse_search_url(url) == {
            "person_titles": ["cto", "vp engineering"],
            "person_locations": ["Germany"],
            "q_keywords": "saas",
            "include_similar_titles": True,
        }

    def test_it_reads_percent_encoded_brackets_and_camel_case_keywords(self):
        url = "https://app.apollo.io/#/people?personSeniorities%5B%5D=c_suite&qKeywords=fintech"
        assert parse_search_url(url) == {"person_seniorities": ["c_suite"], "q_keywords": "fintech"}

    def test_it_renames_the_email_status_filter(self):
        url = "https://app.apollo.io/#/people?contactEmailStatusV2[]=verified&personTitles[]=cto"
        assert parse_search_url(url)["contact_email_status"] == ["verified"]

    @pytest.mark.parametrize(
        "url",
        [
            "",
            "not a url",
            "http://app.apollo.io/#/people?personTitles[]=cto",
            "https://evil.example/#/people?personTitles[]=cto",
            "https://app.apollo.io.evil.example/#/people?personTitles[]=cto",
            "https://user@app.apollo.io/#/people?personTitles[]=cto",
            "https://app.apollo.io/#/companies?organizationLocations[]=Germany",
            "https://app.apollo.io/people?personTitles[]=cto",
        ],
    )
    def test_it_refuses_what_is_not_an_apollo_people_search(self, url):
        with pytest.raises(ValueError, match="Apollo"):
            parse_search_url(url)

    def test_it_refuses_a_search_without_filters(self):
        with pytest.raises(ValueError, match="no filters"):
            parse_search_url("https://app.apollo.io/#/people?page=1&sortAscending=false")


class TestFetchLeads:
    def test_it_searches_then_bulk_matches_ten_people_at_a_time(self, httpserver, client_for):
        ids = [f"p{n}" for n in range(12)]
        headers = {"x-api-key": "test-key", "Content-Type": "application/json"}
        httpserver.expect_ordered_request(
            SEARCH,
            method="POST",
            headers=headers,
            json={"person_titles": ["cto"], "q_keywords": "saas", "page": 1, "per_page": 12},
        ).respond_with_json({"people": [{"id": i, "first_name": "Lee"} for i in ids], "total_entries": 250})
        httpserver.expect_ordered_request(
            BULK_MATCH, method="POST", headers=headers, json={"details": [{"id": i} for i in ids[:10]]}
        ).respond_with_json(
            {
                "matches": [
                    match("p0", "Lee.P0@Acme.example"),
                    None,
                    match("p2", None),
                    match("p3", "email_not_unlocked@domain.com"),
                    *[match(i, f"{i}@acme.example") for i in ids[4:10]],
                ]
            }
        )
        httpserver.expect_ordered_request(
            BULK_MATCH, method="POST", json={"details": [{"id": "p10"}, {"id": "p11"}]}
        ).respond_with_json({"matches": [match("p10", "p10@acme.example"), match("p11", "p11@acme.example")]})

        client = client_for(ApolloClient)
        page = client.fetch_leads(filters={"person_titles": ["cto"], "q_keywords": "saas"}, page=1, per_page=12)

        httpserver.check_assertions()
        assert page.total == 250
        assert page.has_more
        assert [lead.source_id for lead in page.leads] == ["p0", *ids[4:]]
        assert page.leads[0] == LeadData(
            email="lee.p0@acme.example",
            first_name="Lee",
            last_name="P0",
            title="CTO",
            company="Acme",
            company_domain="acme.example",
            linkedin_url="http://www.linkedin.com/in/p0",
            phone="+49301234",
            source_id="p0",
        )

    def test_it_reads_the_total_from_pagination_too(self, httpserver, client_for):
        httpserver.expect_request(SEARCH, method="POST").respond_with_json(
            {"people": [{"id": "p1"}], "pagination": {"page": 3, "per_page": 100, "total_entries": 250}}
        )
        httpserver.expect_request(BULK_MATCH, method="POST").respond_with_json(
            {"matches": [match("p1", "p1@acme.example")]}
        )
        page = client_for(ApolloClient).fetch_leads(filters={"q_keywords": "saas"}, page=3)
        assert page.total == 250
        assert not page.has_more

    def test_it_makes_no_match_call_for_an_empty_page(self, httpserver, client_for):
        httpserver.expect_request(SEARCH, method="POST").respond_with_json({"people": [], "total_entries": 0})
        page = client_for(ApolloClient).fetch_leads(filters={"q_keywords": "nobody"}, page=1)
        assert page.leads == [] and page.total == 0 and not page.has_more
        assert len(httpserver.log) == 1

    def test_it_stops_at_apollos_500th_page(self, httpserver, client_for):
        httpserver.expect_request(SEARCH, method="POST").respond_with_json(
            {"people": [{"id": "p1"}], "total_entries": 1_000_000}
        )
        httpserver.expect_request(BULK_MATCH, method="POST").respond_with_json({"matches": []})
        assert not client_for(ApolloClient).fetch_leads(filters={"q_keywords": "saas"}, page=500).has_more

    @pytest.mark.parametrize(("page", "per_page"), [(0, 100), (501, 100), (1, 0), (1, 101)])
    def test_it_refuses_pages_beyond_apollos_limits_without_calling(self, httpserver, client_for, page, per_page):
        with pytest.raises(ValueError):
            client_for(ApolloClient).fetch_leads(filters={"q_keywords": "saas"}, page=page, per_page=per_page)
        assert httpserver.log == []
