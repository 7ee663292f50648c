from django.db import models
from django.utils import timezone

from calls.errors import short


def local_time(moment) -> str:
    """A moment as the call log shows it to staff (list, page, CSV), in the deployment's time zone."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"


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

    # Until when this call counts as active (concurrency limits), unless Vapi reports it ended first.
    active_until = models.DateTimeField(null=True, blank=True, db_index=True)
    # Vapi's live-call control URL, kept to end calls of a blocked user. Never shown or logged.
    control_url = models.CharField(max_length=1000, blank=True, editable=False)
    api_key = models.ForeignKey(
        "calls.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="call_logs"
    )
    idempotency_key = models.CharField("idempotency key", max_length=255, blank=True)
    request_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    response_body = models.JSONField(null=True, blank=True, editable=False)

    # Filled in from Vapi's webhooks (status-update, end-of-call-report) or the stale-call sweep.
    call_status = models.CharField("call status", max_length=20, blank=True, help_text="As Vapi last reported it.")
    ended_reason = models.CharField("ended reason", max_length=100, blank=True)
    started_at = models.DateTimeField("call started", null=True, blank=True)
    ended_at = models.DateTimeField("call ended", null=True, blank=True)
    duration_seconds = models.FloatField("duration (s)", null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True, help_text="As Vapi reports it (USD).")
    cost_breakdown = models.JSONField(null=True, blank=True)
    summary = models.TextField(blank=True)
    transcript = models.TextField(blank=True)
    recording_url = models.CharField("recording URL", max_length=1000, blank=True)
    structured_data = models.JSONField("structured data", null=True, blank=True)
    success_evaluation = models.CharField("success evaluation", max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "call log entry"
        verbose_name_plural = "call log"
        indexes = [
            models.Index(fields=["user_id", "created_at"], name="calllog_user_time"),
            models.Index(fields=["assistant_type", "active_until"], name="calllog_type_active"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="one_call_per_idempotency_key",
            )
        ]

    def __str__(self):
        return f"{local_time(self.created_at)} {self.user_id or '?'} {self.assistant_type or '?'} {self.outcome}"

    def set_error(self, *, outcome: str, status: int, code: str, detail: str) -> None:
        self.outcome = outcome
        self.status_code = status
        self.error_code = code
        self.error_detail = short(detail, 500)


class WebhookMessage(models.Model):
    """A message Vapi sent to the server URL, kept as received so staff can audit it."""

    received_at = models.DateTimeField("received", default=timezone.now, db_index=True)
    message_type = models.CharField("type", max_length=64, db_index=True)
    vapi_call_id = models.CharField("Vapi call id", max_length=64, blank=True, db_index=True)
    call_log = models.ForeignKey(
        CallLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_messages"
    )
    payload = models.JSONField()
    # A redelivery is the same bytes: applied once, answered again with the stored reply.
    body_sha256 = models.CharField(max_length=64, unique=True)
    reply = models.JSONField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "webhook message"

    def __str__(self):
        return f"{self.message_type} {self.vapi_call_id or '-'}"


class AdmissionLock(models.Model):
    """A row to lock while counting against a limit, so parallel starts in any process are exact."""

    key = models.CharField(max_length=300, unique=True)


class ApiKey(models.Model):
    """A key staff issue to a customer's server for POST /call. Only a prefix and a hash are stored."""

    name = models.CharField(max_length=200, help_text="Who or what uses this key, for staff.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    allowed_types = models.ManyToManyField(
        "assistants.AssistantType", blank=True, help_text="Assistant types this key may start calls for."
    )
    allowed_phone_number_ids = models.JSONField(
        "allowed Vapi phone number ids",
        default=list,
        blank=True,
        help_text='The Vapi phone numbers (ids) this key may call from, e.g. ["5f1c..."].',
    )
    calls_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit of its own.")
    calls_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit of its own.")
    max_concurrent_calls = models.PositiveIntegerField(
        "most calls at once", null=True, blank=True, help_text="Empty: no limit of its own."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Set to revoke the key.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "server API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"
