from django.db import models
from django.utils import timezone

from calls.errors import short


class CallLog(models.Model):
    """One row for every request that reaches a call route, accepted or refused."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending (waiting on Vapi)"
        CREATED = "created", "Created"
        REJECTED = "rejected", "Rejected by the proxy"
        FAILED = "failed", "Failed at Vapi"

    created_at = models.DateTimeField("time", default=timezone.now, db_index=True)
    request_id = models.CharField("request id", max_length=32, db_index=True)
    route = models.CharField(max_length=20, default="web")
    user_id = models.CharField("user id", max_length=255, blank=True, db_index=True)
    assistant_type = models.CharField("assistant type", max_length=100, blank=True)
    assistant = models.ForeignKey(
        "assistants.Assistant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="call_logs",
    )
    origin = models.CharField(max_length=255, blank=True)
    client_ip = models.GenericIPAddressField("client IP", null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING, db_index=True)
    status_code = models.PositiveSmallIntegerField("status returned", null=True, blank=True)
    upstream_status = models.PositiveSmallIntegerField("Vapi status", null=True, blank=True)
    vapi_call_id = models.CharField("Vapi call id", max_length=64, null=True, blank=True, unique=True)
    latency_ms = models.PositiveIntegerField("latency (ms)", null=True, blank=True)
    error_code = models.CharField("error code", max_length=64, blank=True)
    error_detail = models.CharField("detail", max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "call log entry"
        verbose_name_plural = "call log"

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.user_id or '?'} {self.assistant_type or '?'} {self.outcome}"

    def set_error(self, *, outcome: str, status: int, code: str, detail: str) -> None:
        self.outcome = outcome
        self.status_code = status
        self.error_code = code
        self.error_detail = short(detail, 500)
