from django.conf import settings
from django.db import models
from django.db.models import Q


class DeliverabilityBaseline(models.Model):
    """An operator's acknowledgement of a deliverability figure still above its threshold, when
    resuming a campaign or a mailbox the guard paused: the history of that act, and the counts
    at that moment, from which the guard counts again (it judges the sends made since, so an
    acknowledged figure does not trip it again at the next bounce)."""

    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    mailbox = models.ForeignKey("campaigns.Mailbox", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    sends = models.PositiveBigIntegerField()
    bounces = models.PositiveBigIntegerField()
    complaints = models.PositiveBigIntegerField()
    figure = models.CharField(max_length=255)  # what was still above the threshold
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(campaign__isnull=False, mailbox__isnull=True)
                | Q(campaign__isnull=True, mailbox__isnull=False),
                name="deliverabilitybaseline_one_subject",
            )
        ]

    def __str__(self) -> str:
        return f"acknowledged {self.figure}"
