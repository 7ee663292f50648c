import re

from django.core.exceptions import ValidationError
from django.db import models

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _validate_variable_values(value, *, field_label: str):
    if not isinstance(value, dict):
        raise ValidationError({field_label: "Enter a JSON object such as {\"companyName\": \"Acme\"}."})
    for name, item in value.items():
        if not VARIABLE_NAME.match(name):
            raise ValidationError({field_label: f"{name!r} is not a valid variable name (letters, digits, _)."})
        if not isinstance(item, (str, int, float, bool)):
            raise ValidationError({field_label: f"The value of {name!r} must be text, a number or true/false."})


class Assistant(models.Model):
    """What Vapi runs: either an assistant that lives in Vapi (by id) or a config sent with each call."""

    class Kind(models.TextChoices):
        PERMANENT = "permanent", "Permanent (an assistant saved in Vapi, by id)"
        TRANSIENT = "transient", "Transient (a JSON config sent with each call)"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TRANSIENT)
    vapi_assistant_id = models.UUIDField(
        "Vapi assistant id",
        null=True,
        blank=True,
        help_text="For permanent assistants: the assistant's id in the Vapi dashboard.",
    )
    config = models.JSONField(
        "assistant config",
        null=True,
        blank=True,
        help_text="For transient assistants: the JSON object Vapi receives as `assistant` "
        "(model, voice, firstMessage, ...). Use {{name}} placeholders for variables.",
    )
    is_active = models.BooleanField("active", default=True)
    default_variables = models.JSONField(
        default=dict,
        blank=True,
        help_text="Values for {{placeholders}} used when neither the user's mapping nor the client gives one.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.kind == self.Kind.PERMANENT:
            if not self.vapi_assistant_id:
                raise ValidationError({"vapi_assistant_id": "A permanent assistant needs its Vapi assistant id."})
            if self.config:
                raise ValidationError({"config": "A permanent assistant has no config; clear this field."})
        else:
            if not isinstance(self.config, dict) or not self.config:
                raise ValidationError(
                    {"config": "A transient assistant needs its config as a JSON object, e.g. {\"firstMessage\": \"Hi\"}."}
                )
            if self.vapi_assistant_id:
                raise ValidationError({"vapi_assistant_id": "A transient assistant has no Vapi id; clear this field."})
        _validate_variable_values(self.default_variables, field_label="default_variables")

    def vapi_target(self) -> dict:
        """The part of Vapi's create-call body that says which assistant runs."""
        if self.kind == self.Kind.PERMANENT:
            return {"assistantId": str(self.vapi_assistant_id)}
        return {"assistant": self.config}


class ClientVariable(models.Model):
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
        constraints = [models.UniqueConstraint(fields=["assistant", "name"], name="unique_client_variable")]

    def __str__(self):
        return self.name

    def clean(self):
        if not VARIABLE_NAME.match(self.name or ""):
            raise ValidationError({"name": "Use letters, digits and _ only, not starting with a digit."})

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
        help_text="What the frontend sends as assistantType, e.g. sales-coach.",
    )
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField("active", default=True)
    default_assistant = models.ForeignKey(
        Assistant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="default_for_types",
        help_text="Used for users who have no mapping of their own.",
    )
    mapped_users_only = models.BooleanField(
        default=False,
        help_text="Only users with a mapping may start this type; the default assistant is not used.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class UserMapping(models.Model):
    """Which assistant one user of the customer's app gets for a type, with that user's own values."""

    user_id = models.CharField(
        "user id",
        max_length=255,
        help_text="The userId as the customer's app knows it.",
    )
    assistant_type = models.ForeignKey(AssistantType, on_delete=models.CASCADE, related_name="mappings")
    assistant = models.ForeignKey(Assistant, on_delete=models.PROTECT, related_name="mappings")
    variable_values = models.JSONField(
        default=dict,
        blank=True,
        help_text="This user's values for {{placeholders}}; they win over defaults and anything the client sends.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id", "assistant_type__slug"]
        constraints = [
            models.UniqueConstraint(fields=["user_id", "assistant_type"], name="one_mapping_per_user_and_type")
        ]

    def __str__(self):
        return f"{self.user_id} → {self.assistant_type}"

    def clean(self):
        _validate_variable_values(self.variable_values, field_label="variable_values")
