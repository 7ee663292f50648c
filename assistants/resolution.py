"""(userId, assistantType, client variables) -> the assistant and the body Vapi receives.

One code path for every way a call starts, so what staff configure is what Vapi gets.
"""

from dataclasses import dataclass

from assistants.models import Assistant, AssistantType, EndUser, UserMapping
from calls.db import JoinedQuery, unique_row
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


@dataclass(frozen=True)
class Found:
    """What the database holds for one (userId, assistantType)."""

    assistant_type: AssistantType | None
    mapping: UserMapping | None
    end_user: EndUser | None


def _column(model, field_name: str) -> str:
    return model._meta.get_field(field_name).column


_FIND = JoinedQuery(
    [(AssistantType, "t"), (Assistant, "da"), (UserMapping, "m"), (Assistant, "ma"), (EndUser, "e")],
    lambda q: (
        f"FROM {q(AssistantType._meta.db_table)} t"
        f" LEFT JOIN {q(Assistant._meta.db_table)} da ON da.id = t.{q(_column(AssistantType, 'default_assistant'))}"
        f" LEFT JOIN {q(UserMapping._meta.db_table)} m"
        f" ON m.{q(_column(UserMapping, 'assistant_type'))} = t.id AND m.{q(_column(UserMapping, 'user_id'))} = %s"
        f" LEFT JOIN {q(Assistant._meta.db_table)} ma ON ma.id = m.{q(_column(UserMapping, 'assistant'))}"
        f" LEFT JOIN {q(EndUser._meta.db_table)} e ON e.{q(_column(EndUser, 'user_id'))} = %s"
        f" WHERE t.{q(_column(AssistantType, 'slug'))} = %s"
    ),
)


def find(*, user_id: str, assistant_type: str) -> Found:
    """The type with its default assistant, the user's mapping for it with its assistant, and the
    user's own row (blocks, limits), in one query: this runs on every call start."""
    row = _FIND.first([user_id, user_id, assistant_type])
    if row is None:  # no such type: nothing carried the user's row along
        return Found(None, None, unique_row(EndUser.objects.filter(user_id=user_id)))
    kind, default, mapping, mapped, end_user = row
    kind.default_assistant = default
    if mapping is not None:
        mapping.assistant_type = kind
        mapping.assistant = mapped
    return Found(kind, mapping, end_user)


def resolve_assistant(
    *, user_id: str, assistant_type: str, client_variables: dict, found: Found | None = None
) -> Resolution:
    """Finds the user's assistant for the type and merges variables: defaults < client < mapping."""
    found = found or find(user_id=user_id, assistant_type=assistant_type)
    mapping, kind = found.mapping, found.assistant_type
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
