"""Serialisation and input validation for the REST API, written by hand (no library).

Every input (a request body, a query string) is described once, as a table of :class:`Field`\\ s.
The same table validates requests and produces the JSON Schema that openapi.py publishes, so the
document and the checks cannot drift apart. Validation follows JSON Schema's rules (types, lengths,
ranges, enums, patterns; unknown properties are refused), then adds what a schema does not say:
text must not be blank where it is required, must not hold NUL or lone surrogates (no database
stores them), dates must exist. All errors of a body are reported together, each with its field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination

from tracker.actions import evidence
from tracker.models import (
    ActionItem,
    ActionUpdate,
    EvidenceFile,
    ExtensionRequest,
    Office,
    Priority,
    Recommendation,
    Role,
    Status,
    User,
)
from tracker.notifications.render import absolute_url
from tracker.params import MAX_INT

#: Largest id accepted anywhere (a 32-bit column); larger numbers are refused before any query.
MAX_ID = MAX_INT
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_QUERY_INT = re.compile(r"-?[0-9]{1,12}")


class Invalid(Exception):  # noqa: N818 - reads better at the call sites
    """Input refused: ``errors`` lists (field or None, message), in the order found."""

    def __init__(self, errors: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(message for _field, message in errors))
        self.errors = errors


@dataclass(frozen=True)
class Field:
    """One property of a request body or one query parameter, with its JSON Schema constraints."""

    type: str  # "string", "integer", "boolean" or "date" (a string in ISO 8601 form, YYYY-MM-DD)
    description: str
    required: bool = False
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] | None = None
    #: Matched against the whole value; ASCII classes only, so Python and ECMA regexes agree.
    pattern: str | None = None
    #: False: must hold more than white space (checked after the schema's rules).
    blank: bool = True
    #: Documented default of an optional query parameter.
    default: Any = None
    #: A check of a string that JSON Schema cannot express, made before ``enum`` and ``pattern`` so
    #: that its clearer message wins: the value → why it is refused, or None.
    problem: Callable[[str], str | None] | None = None

    def json_schema(self) -> dict[str, Any]:
        """This field as JSON Schema (OpenAPI 3.1)."""
        schema: dict[str, Any] = {"type": "string" if self.type == "date" else self.type}
        if self.type == "date":
            schema["format"] = "date"
        for key, value in (
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
        ):
            if value is not None:
                schema[key] = value
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.pattern is not None:
            schema["pattern"] = f"^(?:{self.pattern})$"
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"].append(None)
        if self.default is not None:
            schema["default"] = self.default
        schema["description"] = self.description
        return schema

    def check(self, name: str, value: Any) -> Any:
        """A JSON value made into a Python value; raises Invalid naming ``name``."""
        if value is None:
            if self.nullable:
                return None
            raise Invalid([(name, _("%(field)s may not be null.", field=name))])
        if self.type == "integer":
            # JSON Schema counts 3.0 as an integer; a boolean is not a number.
            if isinstance(value, float) and math.isfinite(value) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid([(name, _("%(field)s must be a whole number.", field=name))])
            return self._in_range(name, value)
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise Invalid([(name, _("%(field)s must be true or false.", field=name))])
            return value
        if not isinstance(value, str):
            raise Invalid([(name, _("%(field)s must be a string.", field=name))])
        return self._text(name, value)

    def parse(self, name: str, text: str) -> Any:
        """A query-string value made into a Python value; raises Invalid naming ``name``."""
        if self.type == "integer":
            if not _QUERY_INT.fullmatch(text):
                raise Invalid([(name, _("%(field)s must be a whole number.", field=name))])
            return self._in_range(name, int(text))
        if self.type == "boolean":
            if text not in ("true", "false"):
                raise Invalid([(name, _("%(field)s must be true or false.", field=name))])
            return text == "true"
        return self._text(name, text)

    def _in_range(self, name: str, value: int) -> int:
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise Invalid(
                [
                    (
                        name,
                        _(
                            "%(field)s must be from %(low)s to %(high)s.",
                            field=name,
                            low=self.minimum,
                            high=self.maximum,
                        ),
                    )
                ]
            )
        return value

    def _text(self, name: str, value: str) -> Any:
        if self.max_length is not None and len(value) > self.max_length:
            raise Invalid(
                [(name, _("%(field)s is at most %(num)d characters.", field=name, num=self.max_length))]
            )
        if self.min_length is not None and len(value) < self.min_length:
            raise Invalid([(name, _("%(field)s may not be empty.", field=name))])
        if self.problem is not None and (problem := self.problem(value)):
            raise Invalid([(name, problem)])
        if self.enum is not None and value not in self.enum:
            raise Invalid(
                [(name, _("%(field)s must be one of: %(values)s.", field=name, values=", ".join(self.enum)))]
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Invalid([(name, _("%(field)s has a form that is not accepted.", field=name))])
        if "\x00" in value or not _encodable(value):
            raise Invalid([(name, _("%(field)s holds characters that cannot be stored.", field=name))])
        if not self.blank and not value.strip():
            raise Invalid([(name, _("%(field)s may not be blank.", field=name))])
        if self.type == "date":
            if not _DATE.fullmatch(value):
                raise Invalid([(name, _("%(field)s must be a date written YYYY-MM-DD.", field=name))])
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise Invalid([(name, _("%(field)s is not a date that exists.", field=name))]) from None
        return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from "\ud800" in JSON
        return False
    return True


Spec = Mapping[str, Field]


def validate_body(spec: Spec, data: Any, *, partial: bool = False) -> dict[str, Any]:
    """A JSON body checked against ``spec``: the fields given, as Python values; raises Invalid.

    ``partial`` (PATCH): nothing is required, but at least one field must be given.
    """
    if not isinstance(data, dict):
        raise Invalid([(None, _("The body must be a JSON object."))])
    errors: list[tuple[str | None, str]] = []
    values: dict[str, Any] = {}
    for name in data:
        if name not in spec:
            errors.append((name, _("%(field)s is not a field of this request.", field=name)))
    for name, field in spec.items():
        if name not in data:
            if field.required and not partial:
                errors.append((name, _("%(field)s is required.", field=name)))
            continue
        try:
            values[name] = field.check(name, data[name])
        except Invalid as exc:
            errors.extend(exc.errors)
    if partial and not data:
        errors.append((None, _("Give at least one of: %(fields)s.", fields=", ".join(spec))))
    if errors:
        raise Invalid(errors)
    return values


def parse_query(spec: Spec, args: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters checked against ``spec`` (others are ignored); raises Invalid."""
    errors: list[tuple[str | None, str]] = []
    values: dict[str, Any] = {}
    for name, field in spec.items():
        text = args.get(name)
        if text is None:
            values[name] = field.default
            continue
        try:
            values[name] = field.parse(name, text)
        except Invalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise Invalid(errors)
    return values


def body_schema(spec: Spec, *, partial: bool = False) -> dict[str, Any]:
    """The JSON Schema of a request body described by ``spec``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field.json_schema() for name, field in spec.items()},
        "additionalProperties": False,
    }
    required = [name for name, field in spec.items() if field.required and not partial]
    if required:
        schema["required"] = required
    if partial:
        schema["minProperties"] = 1
    return schema


def query_parameters(spec: Spec) -> list[dict[str, Any]]:
    """The OpenAPI parameter objects of a query described by ``spec``."""
    parameters = []
    for name, field in spec.items():
        schema = field.json_schema()
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": schema.pop("description"),
                "schema": schema,
            }
        )
    return parameters


# --- the inputs ------------------------------------------------------------------------------

_STATUSES = tuple(s.value for s in Status)
_PRIORITIES = tuple(p.value for p in Priority)
_EMAIL = {"max_length": 254, "min_length": 1}
#: The recommendation form's rule for codes (tracker/recommendations/forms.py).
CODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"

PAGE = {
    "page": Field("integer", "Page number, from 1.", minimum=1, maximum=100_000, default=1),
    "per_page": Field("integer", "Items per page.", minimum=1, maximum=100, default=50),
}

ACTION_FILTERS: Spec = {
    "office": Field("string", "Office code, e.g. SG (any case).", min_length=1, max_length=8),
    "status": Field("string", "Only actions with this status.", enum=_STATUSES),
    "overdue": Field(
        "boolean", "true: only overdue actions (deadline passed in the office's zone, still open)."
    ),
    "owner": Field("string", "Email of the owner.", **_EMAIL),
    "recommendation": Field("string", "Recommendation code, e.g. R-2023-04.", min_length=1, max_length=32),
    "due_before": Field("date", "Only deadlines on or before this date."),
    "due_after": Field("date", "Only deadlines on or after this date."),
    **PAGE,
}

RECOMMENDATION_FILTERS: Spec = {
    "q": Field("string", "Words in the code, title or text.", max_length=200),
    "theme": Field("string", "Only this theme.", min_length=1, max_length=100),
    "priority": Field("string", "Only this priority.", enum=_PRIORITIES),
    "source": Field(
        "integer", "Only recommendations from the source with this id.", minimum=1, maximum=MAX_ID
    ),
    "archived": Field("boolean", "true: archived recommendations instead of those in use."),
    **PAGE,
}

UPDATES_QUERY: Spec = dict(PAGE)

ACTION_CREATE: Spec = {
    "office": Field(
        "string", "Code of the office whose plan gets the action.", required=True, min_length=1, max_length=8
    ),
    "recommendation_id": Field(
        "integer", "Id of the recommendation (one in use).", required=True, minimum=1, maximum=MAX_ID
    ),
    "title": Field("string", "What will be done.", required=True, min_length=1, max_length=300, blank=False),
    "description": Field("string", "More detail.", nullable=True, max_length=5000),
    "owner": Field(
        "string",
        "Email of the owner: an active focal point or manager of the office.",
        required=True,
        **_EMAIL,
    ),
    "deputy": Field("string", "Email of the deputy (optional), of the same office.", nullable=True, **_EMAIL),
    "deadline": Field("date", "Deadline, a date in the office's time zone.", required=True),
}

#: status/progress/note/deadline/evidence_url go through the workflow (record_update);
#: owner/deputy through the plan edit (edit_action). Both kinds in one request: one transaction.
ACTION_PATCH: Spec = {
    "status": Field("string", "New status; the workflow decides who may make which move.", enum=_STATUSES),
    "progress": Field("integer", "Percent done.", minimum=0, maximum=100),
    "note": Field(
        "string", "A note for the history; some moves and deadline changes need one.", max_length=5000
    ),
    "deadline": Field(
        "date", "New current deadline (reviewers and admins); an office asks with POST …/extensions."
    ),
    "evidence_url": Field(
        "string",
        "An http(s) link to evidence, with a valid host.",
        nullable=True,
        max_length=evidence.MAX_LINK_LENGTH,
        pattern=r"[Hh][Tt][Tt][Pp][Ss]?://[^ ]+",
        problem=evidence.link_problem,
    ),
    "owner": Field("string", "Email of the new owner (reviewers and admins).", **_EMAIL),
    "deputy": Field(
        "string", "Email of the new deputy, or null for none (reviewers and admins).", nullable=True, **_EMAIL
    ),
}

EXTENSION_CREATE: Spec = {
    "deadline": Field("date", "The new deadline asked for: after the current one.", required=True),
    "reason": Field(
        "string", "Why more time is needed.", required=True, min_length=1, max_length=5000, blank=False
    ),
}

EXTENSION_DECISION: Spec = {
    "decision": Field(
        "string",
        "Approve (the deadline moves) or reject (it holds).",
        required=True,
        enum=("approved", "rejected"),
    ),
    "note": Field("string", "A note for the requester; required to reject.", max_length=5000),
}

_RECOMMENDATION_FIELDS = {
    "code": Field(
        "string",
        "Stable reference, e.g. R-2023-04.",
        required=True,
        min_length=1,
        max_length=32,
        pattern=CODE_PATTERN,
    ),
    "title": Field("string", "Short title.", required=True, min_length=1, max_length=300, blank=False),
    "text": Field(
        "string", "The recommendation's text.", required=True, min_length=1, max_length=20000, blank=False
    ),
    "theme": Field(
        "string", "Theme, e.g. Digital services.", required=True, min_length=1, max_length=100, blank=False
    ),
    "priority": Field("string", "Priority (default medium).", enum=_PRIORITIES),
    "source_id": Field(
        "integer", "Id of the source it comes from.", required=True, minimum=1, maximum=MAX_ID
    ),
    "target_date": Field("date", "Target date, or null.", nullable=True),
}
RECOMMENDATION_CREATE: Spec = _RECOMMENDATION_FIELDS
RECOMMENDATION_PATCH: Spec = {
    **_RECOMMENDATION_FIELDS,
    "archived": Field("boolean", "true archives the recommendation, false restores it."),
}


# --- the representations ------------------------------------------------------------------------


def timestamp(value: datetime | None) -> str | None:
    """A UTC time as RFC 3339, e.g. 2026-11-24T08:00:00Z."""
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def day(value: date | None) -> str | None:
    """A date as YYYY-MM-DD."""
    return None if value is None else value.isoformat()


def me_json(user: User) -> dict[str, Any]:
    """The signed-in user."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "office": user.office.code if user.office else None,
        "language": user.language,
        "timezone": user.zone.key,
    }


def office_json(office: Office) -> dict[str, Any]:
    """An office."""
    return {
        "code": office.code,
        "name": office.name,
        "country": office.country,
        "timezone": office.timezone,
        "language": office.language,
        "active": office.active,
    }


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """A recommendation with its source."""
    return {
        "id": rec.id,
        "code": rec.code,
        "title": rec.title,
        "text": rec.text,
        "theme": rec.theme,
        "priority": rec.priority,
        "source": {"id": rec.source.id, "title": rec.source.title},
        "target_date": day(rec.target_date),
        "archived": rec.archived_at is not None,
        "created_at": timestamp(rec.created_at),
        "updated_at": timestamp(rec.updated_at),
        "url": absolute_url("recommendations.detail", recommendation_id=rec.id),
    }


def action_json(item: ActionItem, now: datetime) -> dict[str, Any]:
    """An action item; needs its office, recommendation, owner and deputy loaded."""
    return {
        "id": item.id,
        "recommendation": {"id": item.recommendation.id, "code": item.recommendation.code},
        "office": item.office.code,
        "title": item.title,
        "description": item.description,
        "owner": item.owner.email if item.owner else None,
        "deputy": item.deputy.email if item.deputy else None,
        "deadline": day(item.deadline),
        "agreed_deadline": day(item.agreed_deadline),
        "pending_extension": extension_json(item.pending_extension) if item.pending_extension else None,
        "status": item.status,
        "progress": item.progress,
        "overdue": item.is_overdue(now),
        "version": item.version,
        "created_at": timestamp(item.created_at),
        "updated_at": timestamp(item.updated_at),
        "url": absolute_url("actions.detail", action_id=item.id),
    }


def extension_json(extension: ExtensionRequest) -> dict[str, Any]:
    """A deadline extension request; needs the requester and the decider loaded (or loads them)."""
    return {
        "id": extension.id,
        "action_id": extension.action_item_id,
        "state": extension.state,
        "current_deadline": day(extension.current_deadline),
        "requested_deadline": day(extension.requested_deadline),
        "reason": extension.reason,
        "requested_by": extension.requested_by.email if extension.requested_by else None,
        "requested_at": timestamp(extension.requested_at),
        "decided_by": extension.decided_by.email if extension.decided_by else None,
        "decided_at": timestamp(extension.decided_at),
        "decision_note": extension.decision_note,
    }


def file_json(file: EvidenceFile) -> dict[str, Any]:
    """An evidence file; ``url`` is the site's download link (for a signed-in browser)."""
    return {
        "id": file.id,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "url": absolute_url("actions.evidence_file", file_id=file.id),
    }


def update_json(update: ActionUpdate) -> dict[str, Any]:
    """One history entry; needs its author and files loaded."""
    return {
        "id": update.id,
        "author": update.author.email if update.author else None,
        "created_at": timestamp(update.created_at),
        "version": update.item_version,
        "old_status": update.old_status,
        "new_status": update.new_status,
        "old_progress": update.old_progress,
        "new_progress": update.new_progress,
        "old_deadline": day(update.old_deadline),
        "new_deadline": day(update.new_deadline),
        "note": update.note,
        "evidence_url": update.evidence_url,
        "files": [file_json(f) for f in update.files],
    }


def page_json(page: Pagination, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A page of a list: its items, the page number and size, the total across pages."""
    return {"items": items, "page": page.page, "per_page": page.per_page, "total": page.total or 0}


# --- JSON Schema of the representations (published by openapi.py) -----------------------------

_S = {"type": "string"}
_S_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_DATE_S = {"type": "string", "format": "date"}
_TIME_S = {"type": "string", "format": "date-time"}


def _object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


ME_SCHEMA = _object(
    {
        "id": _INT,
        "email": _S,
        "name": _S,
        "role": {"type": "string", "enum": [r.value for r in Role]},
        "office": _S_NULL,
        "language": _S_NULL,
        "timezone": {**_S, "description": "The zone times are shown in for this user (IANA name)."},
    },
    "The user the token belongs to.",
)
OFFICE_SCHEMA = _object(
    {"code": _S, "name": _S, "country": _S, "timezone": _S, "language": _S, "active": {"type": "boolean"}},
    "A participating office.",
)
RECOMMENDATION_SCHEMA = _object(
    {
        "id": _INT,
        "code": _S,
        "title": _S,
        "text": _S,
        "theme": _S,
        "priority": {"type": "string", "enum": list(_PRIORITIES)},
        "source": _object({"id": _INT, "title": _S}, "Where the recommendation comes from."),
        "target_date": {"type": ["string", "null"], "format": "date"},
        "archived": {"type": "boolean"},
        "created_at": _TIME_S,
        "updated_at": _TIME_S,
        "url": {**_S, "description": "The recommendation's page on the site."},
    },
    "A recommendation.",
)
ACTION_SCHEMA = _object(
    {
        "id": _INT,
        "recommendation": _object({"id": _INT, "code": _S}, "The recommendation the action serves."),
        "office": {**_S, "description": "Office code."},
        "title": _S,
        "description": _S_NULL,
        "owner": {**_S_NULL, "description": "Email of the owner."},
        "deputy": {**_S_NULL, "description": "Email of the deputy."},
        "deadline": {**_DATE_S, "description": "The current deadline; overdue counts against it."},
        "agreed_deadline": {**_DATE_S, "description": "The deadline agreed in the plan (the baseline)."},
        "pending_extension": {
            "oneOf": [{"$ref": "#/components/schemas/Extension"}, {"type": "null"}],
            "description": "The extension request waiting for a decision, if any.",
        },
        "status": {"type": "string", "enum": list(_STATUSES)},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "overdue": {"type": "boolean", "description": "Deadline passed in the office's zone, still open."},
        "version": {"type": "integer", "minimum": 1, "description": "Moves on with every change."},
        "created_at": _TIME_S,
        "updated_at": _TIME_S,
        "url": {**_S, "description": "The action's page on the site."},
    },
    "An action item of an office's plan.",
)
EXTENSION_SCHEMA = _object(
    {
        "id": _INT,
        "action_id": _INT,
        "state": {"type": "string", "enum": ["pending", "approved", "rejected"]},
        "current_deadline": {**_DATE_S, "description": "The action's deadline when the request was made."},
        "requested_deadline": _DATE_S,
        "reason": _S,
        "requested_by": {**_S_NULL, "description": "Email of the requester."},
        "requested_at": _TIME_S,
        "decided_by": {**_S_NULL, "description": "Email of the reviewer who decided."},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "decision_note": _S_NULL,
    },
    "A request to move an action's deadline later, and its decision.",
)
FILE_SCHEMA = _object(
    {
        "id": _INT,
        "filename": _S,
        "content_type": _S,
        "size": _INT,
        "url": {**_S, "description": "Download link on the site (for a signed-in browser)."},
    },
    "An evidence file.",
)
UPDATE_SCHEMA = _object(
    {
        "id": _INT,
        "author": {**_S_NULL, "description": "Email of the author; null for the system."},
        "created_at": _TIME_S,
        "version": {"type": ["integer", "null"], "description": "The action's version after this change."},
        "old_status": _S_NULL,
        "new_status": _S_NULL,
        "old_progress": {"type": ["integer", "null"]},
        "new_progress": {"type": ["integer", "null"]},
        "old_deadline": {"type": ["string", "null"], "format": "date"},
        "new_deadline": {"type": ["string", "null"], "format": "date"},
        "note": _S_NULL,
        "evidence_url": _S_NULL,
        "files": {"type": "array", "items": FILE_SCHEMA},
    },
    "One entry of an action's history (newest first in lists).",
)
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details.",
    "properties": {
        "type": _S,
        "title": _S,
        "status": _INT,
        "detail": _S,
        "errors": {
            "type": "array",
            "description": "422: each refused field (null: the body as a whole) with its message.",
            "items": _object({"field": _S_NULL, "message": _S}, "One refused field."),
        },
        "current_version": {"type": "integer", "description": "409/412: the action's version now."},
        "request_id": {
            "type": "string",
            "description": "The answer's X-Request-ID, to quote when reporting it.",
        },
    },
    "required": ["type", "title", "status", "detail"],
}


def page_schema(item_schema: dict[str, Any], description: str) -> dict[str, Any]:
    """The schema of a page of ``item_schema``."""
    return _object(
        {
            "items": {"type": "array", "items": item_schema},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
        },
        description,
    )


# --- the history of a recommendation (GET /recommendations/<id>/history) ---------------------------


def change_json(change: Any) -> dict[str, Any]:
    """One RecommendationChange; needs its author and office loaded."""
    author = change.author
    return {
        "at": timestamp(change.created_at),
        "author": {"email": author.email, "name": author.name} if author is not None else None,
        "office": change.office.code if change.office is not None else None,
        "field": change.field,
        "old": change.old_value,
        "new": change.new_value,
    }


CHANGE_SCHEMA = _object(
    {
        "at": _TIME_S,
        "author": {
            "anyOf": [_object({"email": _S, "name": _S}, "Who made the change."), {"type": "null"}],
            "description": "Null for the system (e.g. data from before the history was kept).",
        },
        "office": {
            **_S_NULL,
            "description": "Code of the office whose response changed; null for the recommendation itself.",
        },
        "field": {
            **_S,
            "description": "code, title, text, theme, priority, target_date, source (its title), archived; "
            "for a response: response, comment.",
        },
        "old": {**_S_NULL, "description": "The value before, as text (dates ISO, enums as their value)."},
        "new": {**_S_NULL, "description": "The value after; null when cleared."},
    },
    "One changed field of a recommendation or of an office's response to it.",
)
HISTORY_SCHEMA = _object(
    {"items": {"type": "array", "items": CHANGE_SCHEMA, "description": "Newest first."}},
    "The history of a recommendation: the changes you may see.",
)
