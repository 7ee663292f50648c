import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import models
from simple_history.models import HistoricalRecords

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: "$" would let a trailing newline in
VARIABLE_NAME_RULE = "use letters, digits and _ only, not starting with a digit"
EXAMPLE_VAPI_ID = "6f2b7c1e-4d3a-4b5c-8e9f-0a1b2c3d4e5f"
E164 = RegexValidator(r"^\+[1-9]\d{6,14}\Z", "Enter the number in E.164 form: + and country code, e.g. +14155550100.")


def is_variable_name(name) -> bool:
    return isinstance(name, str) and VARIABLE_NAME.fullmatch(name) is not None


def variable_values_problem(value) -> str | None:
    """Why `value` is not a {name: text/number/true-false} object, in words for staff; None if it is."""
    if not isinstance(value, dict):
        return 'Enter a JSON object such as {"companyName": "Acme"}, or leave this empty.'
    for name, item in value.items():
        if not is_variable_name(name):
            return f"{name!r} is not a valid variable name: {VARIABLE_NAME_RULE}."
        if not isinstance(item, (str, int, float, bool)):
            return f"The value of {name!r} must be text, a number or true/false (not a list, object or null)."
    return None


class FieldChecksMixin:
    """Runs a model's own checks along with the field checks, skipping fields already refused.

    A form then shows one message per problem: an id that is not a UUID is refused as such and not
    also as missing (a form never assigns a value it refused, so the model would see none).
    """

    def field_problems(self, skip: set):
        """Yields (field name, message) for each problem; fields in `skip` hold no checked value."""
        return ()

    def clean_fields(self, exclude=None):
        errors = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        skip = set(exclude or ()) | set(errors)
        for field, message in self.field_problems(skip):
            if field not in skip:
                errors.setdefault(field, []).append(ValidationError(message))
        if errors:
            raise ValidationError(errors)


class Assistant(FieldChecksMixin, models.Model):
    """What Vapi runs: either an assistant that lives in Vapi (by id) or a config sent with each call."""

    class Kind(models.TextChoices):
        PERMANENT = "permanent", "Permanent (an assistant saved in Vapi, by id)"
        TRANSIENT = "transient", "Transient (a JSON config sent with each call)"

    name = models.CharField(max_length=200, unique=True, help_text="For staff only; Vapi never sees it.")
    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.TRANSIENT,
        help_text="Permanent: built in the Vapi dashboard; fill in its Vapi assistant id. "
        "Transient: defined here; fill in the assistant config.",
    )
    vapi_assistant_id = models.UUIDField(
        "Vapi assistant id",
        null=True,
        blank=True,
        help_text=f"Permanent assistants only: the assistant's id from the Vapi dashboard, e.g. {EXAMPLE_VAPI_ID}.",
        error_messages={"invalid": f"Enter the assistant's id from the Vapi dashboard, e.g. {EXAMPLE_VAPI_ID}."},
    )
    config = models.JSONField(
        "assistant config",
        null=True,
        blank=True,
        help_text="Transient assistants only: the JSON object Vapi receives as its assistant "
        '(model, voice, firstMessage, ...), e.g. {"firstMessage": "Hi {{customerName}}!"}. '
        "Use {{name}} placeholders for variables.",
    )
    is_active = models.BooleanField(
        "active",
        default=True,
        help_text="Untick to stop all calls to this assistant (they get 403 assistant_inactive).",
    )
    default_variables = models.JSONField(
        default=dict,
        blank=True,
        help_text='Values for {{placeholders}}, e.g. {"companyName": "Acme"}, used when neither the '
        "user's mapping nor the client gives one. Leave empty for none.",
    )
    max_duration_seconds = models.PositiveIntegerField(
        "longest call (seconds)",
        default=600,
        help_text="How long a call may last (Vapi's maxDurationSeconds; 600 unless the config sets another). "
        "A call counts against concurrency limits until Vapi reports it ended, or this plus a grace period.",
    )
    backend_url = models.CharField(
        "backend URL",
        max_length=500,
        validators=[URLValidator(schemes=["https", "http"])],
        blank=True,
        help_text="Where this assistant's tool calls, transfer and knowledge-base requests go. "
        "Empty: CUSTOMER_BACKEND_URL. The backend secret is sent only to that URL's site and the sites "
        "in CUSTOMER_BACKEND_SECRET_ORIGINS.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when, each old version viewable and restorable in the admin.
    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean_fields(self, exclude=None):
        if self.default_variables is None:  # the admin's empty box
            self.default_variables = {}
        super().clean_fields(exclude=exclude)

    def field_problems(self, skip):
        if "kind" not in skip:
            if self.kind == self.Kind.PERMANENT:
                if not self.vapi_assistant_id:
                    yield "vapi_assistant_id", "A permanent assistant needs its Vapi assistant id."
                if self.config:
                    yield "config", "A permanent assistant has no config; clear this field."
            else:
                if not isinstance(self.config, dict) or not self.config:
                    yield (
                        "config",
                        'A transient assistant needs its config as a JSON object, e.g. {"firstMessage": "Hi"}.',
                    )
                if self.vapi_assistant_id:
                    yield "vapi_assistant_id", "A transient assistant has no Vapi id; clear this field."
        problem = variable_values_problem(self.default_variables)
        if problem:
            yield "default_variables", problem

    def vapi_target(self) -> dict:
        """The part of Vapi's create-call body that says which assistant runs."""
        if self.kind == self.Kind.PERMANENT:
            return {"assistantId": str(self.vapi_assistant_id)}
        return {"assistant": self.config}


class ClientVariable(FieldChecksMixin, models.Model):
    """A variable the frontend may supply for an assistant, with the type and size it must have."""

    class ValueType(models.TextChoices):
        STRING = "string", "Text"
        NUMBER = "number", "Number"
        BOOLEAN = "boolean", "True/false"

    assistant = models.ForeignKey(Assistant, on_delete=models.CASCADE, related_name="client_variables")
    name = models.CharField(max_length=100, help_text="The {{name}} used in the assistant's prompt.")
    value_type = models.CharField("type", max_length=10, choices=ValueType.choices, default=ValueType.STRING)
    max_length = models.PositiveIntegerField(default=200, help_text="For text: the most characters accepted.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["assistant", "name"],
                name="unique_client_variable",
                violation_error_message="This assistant already has a variable with this name.",
            )
        ]

    def __str__(self):
        return self.name

    def field_problems(self, skip):
        if not is_variable_name(self.name):
            yield "name", f"Not a valid variable name: {VARIABLE_NAME_RULE}."

    def accepts(self, value) -> bool:
        if self.value_type == self.ValueType.STRING:
            return isinstance(value, str) and len(value) <= self.max_length
        if self.value_type == self.ValueType.NUMBER:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, bool)

    def describe(self) -> str:
        if self.value_type == self.ValueType.STRING:
            return f"text of at most {self.max_length} characters"
        return "a number" if self.value_type == self.ValueType.NUMBER else "true or false"


class AssistantType(models.Model):
    """The public name a frontend asks for (`assistantType`), and who gets which assistant for it."""

    slug = models.SlugField(
        "assistant type",
        max_length=100,
        unique=True,
        help_text="What the frontend sends as assistantType, e.g. sales-coach (letters, digits, - and _).",
    )
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(
        "active",
        default=True,
        help_text="Untick to refuse every call for this type (404 unknown_assistant_type).",
    )
    default_assistant = models.ForeignKey(
        Assistant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="default_for_types",
        help_text="Used for users who have no mapping of their own (unless mapped users only is ticked).",
    )
    mapped_users_only = models.BooleanField(
        default=False,
        help_text="Only users with a mapping may start this type; the default assistant is not used.",
    )
    max_concurrent_calls = models.PositiveIntegerField(
        "most calls at once",
        null=True,
        blank=True,
        help_text="For all users of this type together. Empty: no limit of its own.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when, each old version viewable and restorable in the admin.
    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class UserMapping(FieldChecksMixin, models.Model):
    """Which assistant one user of the customer's app gets for a type, with that user's own values."""

    user_id = models.CharField(
        "user id",
        max_length=255,
        help_text="The userId as the customer's app knows it (exact spelling, case matters).",
    )
    assistant_type = models.ForeignKey(AssistantType, on_delete=models.CASCADE, related_name="mappings")
    assistant = models.ForeignKey(Assistant, on_delete=models.PROTECT, related_name="mappings")
    variable_values = models.JSONField(
        default=dict,
        blank=True,
        help_text='This user\'s values for {{placeholders}}, e.g. {"customerName": "Ana"}; they win over '
        "defaults and anything the client sends. Leave empty for none.",
    )
    calls_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the user's limit for this type. Empty: the user's limit."
    )
    calls_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the user's limit for this type. Empty: the user's limit."
    )
    max_concurrent_calls = models.PositiveIntegerField(
        "most calls at once",
        null=True,
        blank=True,
        help_text="Overrides the user's limit for this type. Empty: the user's limit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when, each old version viewable and restorable in the admin.
    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["user_id", "assistant_type__slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "assistant_type"],
                name="one_mapping_per_user_and_type",
                violation_error_message="This user already has a mapping for this assistant type; edit that one.",
            )
        ]

    def __str__(self):
        return f"{self.user_id} → {self.assistant_type}"

    def clean_fields(self, exclude=None):
        if self.variable_values is None:  # the admin's empty box
            self.variable_values = {}
        super().clean_fields(exclude=exclude)

    def field_problems(self, skip):
        problem = variable_values_problem(self.variable_values)
        if problem:
            yield "variable_values", problem


class PhoneRoute(models.Model):
    """Which assistant type answers inbound calls to one of the organization's Vapi phone numbers."""

    phone_number_id = models.CharField(
        "Vapi phone number id",
        max_length=64,
        blank=True,
        help_text="The number's id in the Vapi dashboard. Give this, the number, or both.",
    )
    phone_number = models.CharField(
        "phone number", max_length=20, blank=True, validators=[E164], help_text="E.164, e.g. +14155550100."
    )
    assistant_type = models.ForeignKey(AssistantType, on_delete=models.PROTECT, related_name="phone_routes")
    refusal_message = models.CharField(
        max_length=300,
        blank=True,
        help_text="Spoken to a caller who may not get the assistant (not mapped, switched off). "
        "Empty: the PHONE_UNAVAILABLE_MESSAGE setting.",
    )
    is_active = models.BooleanField("active", default=True)

    class Meta:
        ordering = ["phone_number", "phone_number_id"]
        verbose_name = "phone number route"
        # Two active routes for one number would leave the answering assistant to chance.
        constraints = [
            models.UniqueConstraint(
                fields=["phone_number_id"],
                condition=models.Q(is_active=True) & ~models.Q(phone_number_id=""),
                name="one_active_route_per_phone_number_id",
                violation_error_message="Another active route already has this Vapi phone number id.",
            ),
            models.UniqueConstraint(
                fields=["phone_number"],
                condition=models.Q(is_active=True) & ~models.Q(phone_number=""),
                name="one_active_route_per_phone_number",
                violation_error_message="Another active route already has this phone number.",
            ),
        ]

    def __str__(self):
        return self.phone_number or self.phone_number_id

    def clean(self):
        if not self.phone_number_id and not self.phone_number:
            raise ValidationError("Give the Vapi phone number id, the number, or both.")

    @classmethod
    def find(cls, *, phone_number_id: str, number: str):
        """The active route for a number; one matched by Vapi's id wins over one matched by the number."""
        query = models.Q()
        if phone_number_id:
            query |= models.Q(phone_number_id=phone_number_id)
        if number:
            query |= models.Q(phone_number=number)
        if not query:
            return None
        routes = list(cls.objects.select_related("assistant_type").filter(query, is_active=True)[:2])
        routes.sort(key=lambda route: route.phone_number_id != phone_number_id)
        return routes[0] if routes else None


class PhoneCaller(models.Model):
    """A caller's number known as one of the customer's users, so their inbound calls get their mapping."""

    phone_number = models.CharField("caller's number", max_length=20, unique=True, validators=[E164])
    user_id = models.CharField("user id", max_length=255, db_index=True)

    class Meta:
        ordering = ["phone_number"]

    def __str__(self):
        return f"{self.phone_number} → {self.user_id}"

    @classmethod
    def user_id_for(cls, number: str) -> str:
        if not number:
            return ""
        return cls.objects.filter(phone_number=number).values_list("user_id", flat=True).first() or ""


class EndUser(models.Model):
    """One user of the customer's app, as far as the proxy's limits and blocks go (created on demand)."""

    user_id = models.CharField("user id", max_length=255, unique=True)
    is_blocked = models.BooleanField(
        "blocked", default=False, help_text="Blocked users cannot start calls (403 user_blocked)."
    )
    blocked_reason = models.CharField(max_length=300, blank=True, help_text="For staff; never shown to the user.")
    calls_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: LIMIT_USER_CALLS_PER_MINUTE."
    )
    calls_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: LIMIT_USER_CALLS_PER_DAY.")
    max_concurrent_calls = models.PositiveIntegerField(
        "most calls at once", null=True, blank=True, help_text="Empty: LIMIT_USER_CONCURRENT_CALLS."
    )
    daily_spend_limit = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="In the currency Vapi reports (USD), per day in the deployment's time zone. "
        "Empty: LIMIT_USER_DAILY_SPEND.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id"]
        verbose_name = "app user"
        verbose_name_plural = "app users (blocks and limits)"

    def __str__(self):
        return self.user_id
