"""The columns of import files and action exports: identifiers, labels in the reader's language, help.

Columns are fixed identifiers (:data:`COLUMNS`; the template uses them). Exports head them with labels in
the reader's language (:data:`COLUMN_LABELS`), and an import accepts the identifiers or the labels of any
interface language, so a file exported in any language imports back; case, spaces and dashes do not
matter. Columns that are not used are ignored, with a warning unless they are the read-only columns of an
export.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask_babel import lazy_gettext as _l

#: What an import reads, in the order of the template and of exports. Fixed English identifiers,
#: never translated, so that a file exported in any language imports back.
COLUMNS: tuple[str, ...] = (
    "recommendation_code",
    "recommendation_title",
    "recommendation_text",
    "theme",
    "priority",
    "source",
    "office_code",
    "action_id",
    "action_title",
    "description",
    "owner_email",
    "deputy_email",
    "deadline",
    "agreed_deadline",
    "status",
    "progress",
    "note",
)
#: Read-only columns an export adds after COLUMNS; an import ignores them without a warning.
EXPORT_EXTRAS: tuple[str, ...] = ("office_name", "owner_name", "overdue", "updated_at")
#: What a person reads at the top of an export's columns, in their language. An import reads these
#: in any of the interface's languages, as well as the identifiers, so any export imports back.
COLUMN_LABELS: dict[str, Any] = {
    "recommendation_code": _l("Recommendation code"),
    "recommendation_title": _l("Recommendation title"),
    "recommendation_text": _l("Recommendation text"),
    "theme": _l("Theme"),
    "priority": _l("Priority"),
    "source": _l("Source"),
    "office_code": _l("Office code"),
    "action_id": _l("Action ID"),
    "action_title": _l("Action title"),
    "description": _l("Description"),
    "owner_email": _l("Owner email"),
    "deputy_email": _l("Deputy email"),
    "deadline": _l("Deadline"),
    "agreed_deadline": _l("Agreed deadline"),
    "status": _l("Status"),
    "progress": _l("Progress"),
    "note": _l("Note on the change"),
    "office_name": _l("Office name"),
    "owner_name": _l("Owner name"),
    "overdue": _l("Overdue"),
    "updated_at": _l("Last updated"),
}


def column_labels(columns: Iterable[str]) -> list[str]:
    """The headers of ``columns`` in the current language."""
    return [str(COLUMN_LABELS[column]) for column in columns]


#: What each column holds, for the upload page and the template's second sheet.
COLUMN_HELP: dict[str, Any] = {
    "recommendation_code": _l("Required. The recommendation's code, e.g. R-2023-04: letters, digits, . _ -."),
    "recommendation_title": _l("Required for a new recommendation."),
    "recommendation_text": _l("Required for a new recommendation."),
    "theme": _l("Required for a new recommendation."),
    "priority": _l("high, medium or low (default: medium)."),
    "source": _l("Required for a new recommendation: the exact title of an existing source."),
    "office_code": _l("Required on a row with an action: the office's code, e.g. SG."),
    "action_id": _l(
        "Empty for a new action; filled by exports. Else actions are matched by office and title."
    ),
    "action_title": _l("Required for a new action."),
    "description": _l("Optional."),
    "owner_email": _l("Optional: an active focal point or manager of the office."),
    "deputy_email": _l("Optional: like the owner, and someone else."),
    "deadline": _l(
        "Required for a new action: YYYY-MM-DD, a date cell, or day, month and year in your "
        "language's order (31/03/2027 in French or British English). The current deadline: on an "
        "existing action a new date is recorded as a deadline set by the importing reviewer."
    ),
    "agreed_deadline": _l(
        "Optional: the deadline agreed in the plan (default: the deadline). Set when the action is "
        "created; on an existing action it never changes by import, so leave it as exported or empty."
    ),
    "status": _l(
        "not_started (default), in_progress, blocked, completed, verified or cancelled. A change must be "
        "a move the workflow allows, as on the action's page."
    ),
    "progress": _l("A whole number from 0 to 100 (default 0)."),
    "note": _l(
        "Optional: why the status, progress or deadline changes; written in the history. Required to "
        "report a completion, send one back, reopen or cancel. Exports leave it empty."
    ),
}
