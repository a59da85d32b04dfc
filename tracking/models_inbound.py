"""Where the IMAP reply poller stands in each mailbox it reads (tracking/imap.py). Imported by
tracking/models.py.

Keyed by the account's key string, not by a foreign key: accounts come from settings today and
from the organization's mailboxes later (tracking.imap.imap_accounts), and a cursor must outlive
either form of its account."""

from django.db import models


class ImapAccountState(models.Model):
    account_key = models.CharField(max_length=255, unique=True)
    folder = models.CharField(max_length=255, default="INBOX")
    # RFC 3501: UIDs are meaningful only with the folder's UIDVALIDITY; a new one means every UID
    # we remember is void, so the poller starts over from the look-back window.
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    messages_seen = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_key"]

    def __str__(self) -> str:
        return f"{self.account_key} ({self.folder}, uid {self.last_uid})"
