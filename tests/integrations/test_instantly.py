from integrations.instantly import AddLeadsResult, InstantlyClient


def leads(count: int) -> list[dict]:
    return [{"email": f"lead{n}@acme.example", "first_name": "Lee"} for n in range(count)]


def test_it_creates_a_campaign_with_a_schedule(httpserver, client_for):
    httpserver.expect_request(
        "/api/v2/campaigns", method="POST", headers={"Authorization": "Bearer test-key"}
    ).respond_with_json({"id": "0190-camp", "name": "Q3", "status": 0})
    assert client_for(InstantlyClient).create_campaign(name="Q3") == "0190-camp"
    body = httpserver.log[0][0].get_json()
    assert body["name"] == "Q3"
    schedule = body["campaign_schedule"]["schedules"][0]
    assert set(schedule) == {"name", "timing", "days", "timezone"}
    assert schedule["timing"] == {"from": "09:00", "to": "17:00"}


def test_it_adds_leads_in_chunks_of_a_thousand(httpserver, client_for):
    httpserver.expect_request("/api/v2/leads/add", method="POST").respond_with_json(
        {
            "status": "success",
            "leads_uploaded": 990,
            "in_blocklist": 3,
            "duplicated_leads": 2,
            "skipped_count": 4,
            "invalid_email_count": 1,
            "created_leads": [{"id": "l1", "email": "lead0@acme.example", "index": 0}],
        }
    )
    result = client_for(InstantlyClient).add_leads(campaign_id="0190-camp", leads=leads(2500))

    bodies = [request.get_json() for request, _ in httpserver.log]
    assert [len(body["leads"]) for body in bodies] == [1000, 1000, 500]
    assert all(body["campaign_id"] == "0190-camp" and body["skip_if_in_campaign"] is True for body in bodies)
    assert all("list_id" not in body for body in bodies)
    assert bodies[2]["leads"][-1]["email"] == "lead2499@acme.example"
    assert result == AddLeadsResult(
        leads_uploaded=2970,
        in_blocklist=9,
        duplicated_leads=6,
        skipped_count=12,
        invalid_email_count=3,
        created_leads=[{"id": "l1", "email": "lead0@acme.example", "index": 0}] * 3,
    )


def test_it_sends_nothing_when_there_are_no_leads(httpserver, client_for):
    assert client_for(InstantlyClient).add_leads(campaign_id="0190-camp", leads=[]) == AddLeadsResult()
    assert httpserver.log == []


def test_it_reads_the_analytics_of_one_campaign(httpserver, client_for):
    row = {"campaign_id": "0190-camp", "emails_sent_count": 120, "open_count": 40, "reply_count": 3}
    httpserver.expect_request(
        "/api/v2/campaigns/analytics", method="GET", query_string={"id": "0190-camp"}
    ).respond_with_json([row])
    assert client_for(InstantlyClient).campaign_analytics(campaign_id="0190-camp") == row
