import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.models import Campaign, Job, Lead, Membership, Organization
from campaigns.states import JOB_FINAL_STATUSES


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "password")
        if create:
            self.save(update_fields=["password"])


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")
    postal_address = "1 Test Street, 10115 Berlin, Germany"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Membership.Role.OWNER


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    search_url = "https://app.apollo.io/#/people?personTitles[]=cto&personLocations[]=Germany"
    lead_count = 5
    from_name = "Alice"
    from_email = "alice@example.com"
    subject_template = "Hello {{ first_name }}"
    body_template = "Hi {{ first_name }}, see https://example.com/offer"


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    campaign = factory.SubFactory(CampaignFactory)
    email = factory.Sequence(lambda n: f"lead{n}@example.org")
    first_name = "Lee"
    last_name = factory.Sequence(lambda n: f"Lead{n}")
    company = "Acme"
    source = "apollo"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    campaign = factory.SubFactory(CampaignFactory)
    job_type = "verify_email"
    status = "pending"
    # A final job has its finished_at (the job_finished_iff_final constraint).
    finished_at = factory.LazyAttribute(lambda job: timezone.now() if job.status in JOB_FINAL_STATUSES else None)
