from django.db import models


class SandboxSetting(models.Model):
    """An operator's failure injection and latency for one service's sandbox (see sandbox.py)."""

    class Service(models.TextChoices):
        APOLLO = "apollo"
        INSTANTLY = "instantly"
        MILLIONVERIFIER = "millionverifier", "MillionVerifier"
        OPENAI = "openai", "OpenAI"
        PERPLEXITY = "perplexity"
        SMTP = "smtp", "SMTP"

    service = models.CharField(max_length=32, choices=Service.choices, unique=True)
    fail = models.BooleanField(default=False, help_text="Every call to this sandbox fails, to trip its breaker.")
    latency_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delay per call; empty uses SANDBOX_LATENCY_MS."
    )

    class Meta:
        ordering = ["service"]

    def __str__(self) -> str:
        return self.get_service_display()
