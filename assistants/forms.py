"""JSON boxes staff edit by hand in the admin: plain-words errors that say where, shown indented."""

import json

from django import forms
from django.core.exceptions import ValidationError

from calls.bodies import loads_strict

EMPTY = (None, {}, [])
MONOSPACE = "font-family: ui-monospace, Menlo, Consolas, monospace; width: 100%; max-width: 60em"

# What Python's json module says, in words for someone who does not write JSON every day.
_JSON_PROBLEMS = {
    "Expecting ',' delimiter": "a comma is missing between two items",
    "Expecting ':' delimiter": "a colon (:) is missing after a name",
    "Expecting property name enclosed in double quotes": (
        'a name is not in double quotes, or there is a comma after the last item'
    ),
    "Expecting value": 'a value is missing or not JSON (text needs double quotes, e.g. "Hi")',
    "Unterminated string starting at": "a text is not closed with a double quote",
    "Invalid control character at": r"a text has a line break or tab in it (write \n or \t instead)",
    "Invalid \\escape": r"a backslash is not followed by a JSON escape (use \\ for a backslash)",
    "Extra data": "there is more after the end of the JSON (only one value is allowed)",
}


def parse_staff_json(text: str):
    """The JSON in `text`; a ValidationError saying where it is broken (line, column) in words for staff."""
    try:
        return loads_strict(text)
    except json.JSONDecodeError as err:
        problem = _JSON_PROBLEMS.get(err.msg, err.msg)
        message = f"This is not valid JSON: line {err.lineno}, column {err.colno}: {problem}."
    except RecursionError:
        message = "This is not valid JSON: it is nested too deeply."
    except ValueError as err:  # NaN, Infinity, 1e400, a number with too many digits
        message = f"This is not valid JSON: {err}."
    raise ValidationError(message, code="invalid")


class StaffJSONField(forms.JSONField):
    """A JSON textarea: an empty box is "nothing" (not the word null), nothing stored ({}, []) is an
    empty box, stored JSON is shown indented (2 spaces), and invalid JSON is refused saying where.
    Which shapes a field takes (an object, a list) is the model's or the form's check, with its
    own message."""

    def __init__(self, *, rows: int = 10, **kwargs):
        kwargs["widget"] = forms.Textarea(
            attrs={"rows": rows, "cols": 100, "spellcheck": "false", "style": MONOSPACE}
        )
        super().__init__(**kwargs)

    def to_python(self, value):
        if self.disabled:
            return value
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, (list, dict, int, float, forms.fields.JSONString)):
            return value
        converted = parse_staff_json(value)
        if isinstance(converted, str):
            return forms.fields.JSONString(converted)
        return converted

    def bound_data(self, data, initial):
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return self.to_python(data)
        except ValidationError:
            return forms.fields.InvalidJSONInput(data)

    def has_changed(self, initial, data):
        try:
            typed = self.to_python(data)
        except ValidationError:
            return True
        if initial in EMPTY and typed in EMPTY:  # an empty box where nothing ({} or []) was stored
            return False
        return super().has_changed(initial, data)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        if value in EMPTY:  # "Leave empty for none" means an empty box, not {} or null
            return ""
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)
