"""Campaign templates are checked when saved (API and admin) and rendered within bounds."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.models import Campaign
from campaigns.templating import campaign_templates_check
from tests.factories import CampaignFactory, LeadFactory
from tracking.rendering import lead_context, render_content

URL = "/api/v1/campaigns/"
SEARCH_URL = "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Germany"


def payload(**overrides):
    return {
        "name": "Templates",
        "search_url": SEARCH_URL,
        "from_email": "alice@example.com",
        "subject_template": "Hi {{ first_name }}",
        "body_template": "Hello {{ first_name }} at {{ company }}",
        **overrides,
    }


def test_a_valid_template_is_accepted(alice_client, org):
    body = (
        "Hi {{ first_name|default:'there' }},\n"
        "{% if company %}How is {{ company }}?{% endif %}\n"
        "{% for word in title.split %}{{ word|lower }} {% endfor %}\n{{ personalization }}"
    )
    response = alice_client.post(URL, payload(body_template=body), format="json")
    assert response.status_code == 201, response.data


def test_a_syntax_error_is_a_400_naming_the_field_and_the_line(alice_client, org):
    response = alice_client.post(URL, payload(body_template="Hello\n\nThanks {% if %}yes{% endif %}"), format="json")
    assert response.status_code == 400
    assert response.data["body_template"] == ["Line 3: Unexpected end of expression in if tag."]
    assert not Campaign.objects.exists()


def test_an_unknown_filter_is_a_400(alice_client, org):
    response = alice_client.post(URL, payload(subject_template="Hi {{ first_name|shout }}"), format="json")
    assert response.status_code == 400
    assert response.data["subject_template"][0].startswith("Line 1: Unknown filter |shout.")


def test_an_unknown_variable_is_a_400_listing_the_known_ones(alice_client, org):
    response = alice_client.post(URL, payload(subject_template="Hi {{ frist_name }}"), format="json")
    assert response.status_code == 400
    message = response.data["subject_template"][0]
    assert message.startswith("Line 1: Unknown variable {{ frist_name }}.") and "first_name" in message


@pytest.mark.parametrize(
    "tag",
    [
        "{% include 'admin/base.html' %}",
        "{% extends 'admin/base.html' %}",
        "{% load static %}",
        "{% debug %}",
        "{% ssi '/etc/passwd' %}",
        "{% lorem 100 p %}",
        "{% url 'admin:index' %}",
        "{% csrf_token %}",
        "{% autoescape off %}{{ first_name }}{% endautoescape %}",
        "{% widthratio 1 2 3 %}",
    ],
)
def test_a_tag_outside_the_allowed_set_is_a_400(alice_client, org, tag):
    response = alice_client.post(URL, payload(body_template=f"Hello\n{tag}"), format="json")
    assert response.status_code == 400, response.data
    message = response.data["body_template"][0]
    assert message.startswith("Line 2: ") and "Allowed: comment, cycle" in message


@pytest.mark.parametrize("filter_", ["ljust:5000000", "safe", "pprint", "stringformat:'9999999s'", "add:'x'"])
def test_a_filter_outside_the_allowed_set_is_a_400(alice_client, org, filter_):
    response = alice_client.post(URL, payload(body_template=f"{{{{ first_name|{filter_} }}}}"), format="json")
    assert response.status_code == 400
    assert "is not allowed in campaign templates" in response.data["body_template"][0]


def test_an_update_with_a_broken_template_changes_nothing(alice_client, org):
    campaign = CampaignFactory(organization=org)
    response = alice_client.patch(f"{URL}{campaign.pk}/", {"body_template": "{% for %}"}, format="json")
    assert response.status_code == 400
    assert "body_template" in response.data
    campaign.refresh_from_db()
    assert campaign.body_template == "Hi {{ first_name }}, see https://example.com/offer"


def test_a_body_over_the_size_limit_is_a_400(alice_client, org, settings):
    settings.CAMPAIGN_BODY_TEMPLATE_MAX_CHARS = 100
    response = alice_client.post(URL, payload(body_template="x" * 101), format="json")
    assert response.status_code == 400
    assert response.data["body_template"] == ["At most 100 characters (this one has 101)."]


def test_a_subject_over_one_header_line_is_a_400(alice_client, org):
    response = alice_client.post(URL, payload(subject_template="x" * 999), format="json")
    assert response.status_code == 400 and "subject_template" in response.data


def test_a_small_template_that_renders_a_huge_message_is_refused_when_saved(alice_client, org):
    # Under 300 bytes of template; 200 x 200 copies of 200 characters rendered.
    loops = "{% for a in s %}{% for b in s %}{{ s }}{% endfor %}{% endfor %}"
    body = '{% with s="' + "&" * 200 + '" %}' + loops + "{% endwith %}"
    response = alice_client.post(URL, payload(body_template=body), format="json")
    assert response.status_code == 400
    assert "larger than 262144 characters" in response.data["body_template"][0]


def test_nested_loops_that_would_run_for_seconds_are_refused_when_saved(alice_client, org):
    loop = "{% for a in 'abcdefghijklmnopqrstuvwxyz0123' %}"
    body = loop * 4 + "{% endfor %}" * 4  # 30^4 = 810,000 iterations that render nothing
    response = alice_client.post(URL, payload(body_template=body), format="json")
    assert response.status_code == 400
    assert "too much work" in response.data["body_template"][0]


def test_the_admin_shows_a_template_error_on_its_field(admin_client_logged_in, org):
    data = {
        "organization": org.pk,
        "name": "Broken",
        "lead_count": 20,
        "channel": "smtp",
        "subject_template": "Hi",
        "body_template": "Hi {% include 'x' %}",
        "send_rate_per_minute": 60,
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
    }
    response = admin_client_logged_in.post(reverse("admin:campaigns_campaign_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["body_template"]
    assert "The {% include %} tag is not allowed" in errors["body_template"][0]
    assert not Campaign.objects.filter(name="Broken").exists()


# --- rendering bounds, wherever it renders ------------------------------------------------------


def saved_without_check(org, **templates) -> Campaign:
    """A campaign whose templates were stored before they were checked (older data, a raw write)."""
    campaign = CampaignFactory(organization=org)
    Campaign.objects.filter(pk=campaign.pk).update(**templates)
    campaign.refresh_from_db()
    return campaign


def test_rendering_stops_a_message_at_the_output_bound(org):
    campaign = saved_without_check(
        org, body_template="{% for a in company %}{% for b in company %}{{ company }}{% endfor %}{% endfor %}"
    )
    lead = LeadFactory(campaign=campaign, company="C" * 255)  # 255^3 = 16.5 million characters
    with pytest.raises(ValidationError) as caught:
        render_content(campaign=campaign, context=lead_context(lead))
    assert "larger than 262144 characters" in caught.value.message_dict["body_template"][0]


def test_rendering_stops_nested_loops_at_the_work_bound(org):
    loops = "{% for a in company %}" * 4 + "{% endfor %}" * 4
    campaign = saved_without_check(org, body_template=loops)
    lead = LeadFactory(campaign=campaign, company="C" * 100)  # 100^4 = 100 million iterations
    with pytest.raises(ValidationError) as caught:
        render_content(campaign=campaign, context=lead_context(lead))
    assert "too much work" in caught.value.message_dict["body_template"][0]


def test_subject_and_body_share_one_message_budget(org, settings):
    settings.CAMPAIGN_RENDER_MAX_CHARS = 100
    campaign = saved_without_check(org, subject_template="s" * 60, body_template="b" * 60)
    with pytest.raises(ValidationError) as caught:
        render_content(campaign=campaign, context={})
    assert "body_template" in caught.value.message_dict


def test_a_render_never_reads_the_context_objects_own_attributes(org):
    campaign = saved_without_check(org, body_template="[{{ template.source }}][{{ dicts }}]")
    assert render_content(campaign=campaign, context={}).text == "[][]"


def test_variables_are_escaped_in_html_and_kept_in_text(org):
    campaign = saved_without_check(org, body_template="<p>Hi {{ first_name }}</p>", subject_template="{{ first_name }}")
    content = render_content(campaign=campaign, context={"first_name": "<b>Sam</b> & co"})
    assert "&lt;b&gt;Sam&lt;/b&gt; &amp; co" in content.html
    assert content.subject == "<b>Sam</b> & co"


def test_the_check_reports_both_fields_at_once():
    with pytest.raises(ValidationError) as caught:
        campaign_templates_check(subject_template="{{ x|nope }}", body_template="{% load i18n %}")
    assert sorted(caught.value.message_dict) == ["body_template", "subject_template"]
