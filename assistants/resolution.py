"""(userId, assistantType, client variables) -> the assistant and the body Vapi receives.

One code path for every way a call starts, so what staff configure is what Vapi gets.
"""

from dataclasses import dataclass

from assistants.models import Assistant, AssistantType, UserMapping
from calls.db import unique_row
from calls.errors import ProxyError


@dataclass(frozen=True)
class Resolution:
    user_id: str
    assistant_type: AssistantType
    assistant: Assistant
    mapping: UserMapping | None
    variables: dict

    def vapi_body(self, *, call_log_id: int | None) -> dict:
        """The create-call body, built only from what staff stored and the checked variables."""
        metadata = {"userId": self.user_id, "assistantType": self.assistant_type.slug}
        if call_log_id is not None:
            metadata["callLogId"] = call_log_id
        overrides = {"metadata": metadata}
        if self.variables:
            overrides = {"variableValues": self.variables, **overrides}
        return {**self.assistant.vapi_target(), "assistantOverrides": overrides}


def resolve_assistant(*, user_id: str, assistant_type: str, client_variables: dict) -> Resolution:
    """Finds the user's assistant for the type and merges variables: defaults < client < mapping."""
    mapping = unique_row(
        UserMapping.objects.select_related("assistant", "assistant_type").filter(
            user_id=user_id, assistant_type__slug=assistant_type
        )
    )
    if mapping is not None:
        kind = mapping.assistant_type
    else:
        kind = unique_row(AssistantType.objects.select_related("default_assistant").filter(slug=assistant_type))
    if kind is None or not kind.is_active:
        raise ProxyError(
            404,
            "unknown_assistant_type",
            f"Assistant type {assistant_type!r} does not exist or is not active.",
        )

    if mapping is not None:
        assistant = mapping.assistant
    elif kind.mapped_users_only or kind.default_assistant is None:
        raise ProxyError(
            403,
            "user_not_mapped",
            f"User {user_id!r} has no assistant for {kind.slug!r}: ask staff to map this user"
            + (" (this type is for mapped users only)." if kind.mapped_users_only else "."),
        )
    else:
        assistant = kind.default_assistant
    if not assistant.is_active:
        raise _about(
            assistant, ProxyError(403, "assistant_inactive", f"The assistant for {kind.slug!r} is switched off.")
        )

    allowed = {}
    if client_variables:
        allowed = {variable.name: variable for variable in assistant.client_variables.all()}
    for name, value in client_variables.items():
        variable = allowed.get(name)
        if variable is None:
            permitted = ", ".join(sorted(allowed)) or "none"
            raise _about(
                assistant,
                ProxyError(
                    400,
                    "variable_not_allowed",
                    f"Variable {name!r} may not be set by the client for {kind.slug!r} (allowed: {permitted}).",
                ),
            )
        if not variable.accepts(value):
            raise _about(
                assistant, ProxyError(400, "invalid_variable", f"Variable {name!r} must be {variable.describe()}.")
            )

    variables = {
        **(assistant.default_variables or {}),
        **client_variables,
        **(mapping.variable_values if mapping is not None else {}),
    }
    return Resolution(
        user_id=user_id,
        assistant_type=kind,
        assistant=assistant,
        mapping=mapping,
        variables=variables,
    )


def _about(assistant: Assistant, error: ProxyError) -> ProxyError:
    """A refusal that comes after the assistant is known: the call log shows staff which one."""
    error.assistant = assistant
    return error
