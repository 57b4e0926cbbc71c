"""Translatable names for the stored enum values, for pages, mail and exports."""

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

from tracker.indicators.models import Direction, MeasurementEvent, MeasurementState, Unit
from tracker.models import (
    ExtensionState,
    HistoryEvent,
    NotificationKind,
    Priority,
    ResponseKind,
    Role,
    Status,
)

ROLE_LABELS = {
    Role.ADMIN: _l("Administrator"),
    Role.REVIEWER: _l("Reviewer"),
    Role.MANAGER: _l("Manager"),
    Role.FOCAL_POINT: _l("Focal point"),
}

STATUS_LABELS = {
    Status.PROPOSED: _l("Proposed, awaiting acceptance"),
    Status.NOT_STARTED: _l("Not started"),
    Status.IN_PROGRESS: _l("In progress"),
    Status.BLOCKED: _l("Blocked"),
    Status.COMPLETED: _l("Completed, awaiting verification"),
    Status.VERIFIED: _l("Verified"),
    Status.CANCELLED: _l("Cancelled"),
}


PRIORITY_LABELS = {
    Priority.HIGH: _l("High"),
    Priority.MEDIUM: _l("Medium"),
    Priority.LOW: _l("Low"),
}

RESPONSE_LABELS = {
    ResponseKind.ACCEPTED: _l("Accepted"),
    ResponseKind.PARTIALLY_ACCEPTED: _l("Partially accepted"),
    ResponseKind.NOTED: _l("Noted (not accepted)"),
    ResponseKind.NOT_APPLICABLE: _l("Not applicable"),
}


KIND_LABELS = {
    NotificationKind.DUE_SOON: _l("reminders before a deadline"),
    NotificationKind.OVERDUE: _l("overdue reminders"),
    NotificationKind.ESCALATION: _l("escalations"),
    NotificationKind.STALE: _l("nudges about actions without updates"),
    NotificationKind.DIGEST: _l("the quarterly digest"),
    NotificationKind.ASSIGNMENT: _l("assignments"),
    NotificationKind.SENT_BACK: _l("completions sent back"),
    NotificationKind.VERIFIED: _l("verifications"),
    NotificationKind.REVIEW_QUEUE: _l("the daily verification list"),
    NotificationKind.INVITATION: _l("invitations"),
    NotificationKind.PASSWORD_RESET: _l("password resets"),
    NotificationKind.REOPENED: _l("verified actions reopened"),
    NotificationKind.EXTENSION_DECIDED: _l("decisions on deadline extensions"),
    NotificationKind.RELAY_ALERT: _l("alerts about the mail relay"),
    NotificationKind.JOB_DONE: _l("exports and imports that are ready"),
    NotificationKind.RESPONSE_REQUEST: _l("requests for your office’s response to a recommendation"),
    NotificationKind.PROPOSAL_DECIDED: _l("decisions on actions you proposed"),
    NotificationKind.INDICATORS_DUE: _l("reminders of indicator values to report"),
}


EVENT_LABELS = {
    HistoryEvent.CREATED: _l("Added to the plan"),
    HistoryEvent.EDITED: _l("Plan edited"),
    HistoryEvent.REASSIGNED: _l("Reassigned"),
    HistoryEvent.DEADLINE_SET: _l("Deadline set by a reviewer"),
    HistoryEvent.EXTENSION_REQUESTED: _l("Extension requested"),
    HistoryEvent.EXTENSION_APPROVED: _l("Extension approved"),
    HistoryEvent.EXTENSION_REJECTED: _l("Extension rejected"),
    HistoryEvent.SENT_BACK: _l("Sent back"),
    HistoryEvent.VERIFIED: _l("Verified"),
    HistoryEvent.REOPENED: _l("Reopened"),
    HistoryEvent.WITHDRAWN: _l("Completion report withdrawn"),
    HistoryEvent.IMPORTED: _l("Imported"),
    HistoryEvent.PROPOSED: _l("Proposed by the office"),
    HistoryEvent.ACCEPTED: _l("Proposal accepted into the plan"),
    HistoryEvent.DECLINED: _l("Proposal declined"),
}


UNIT_LABELS = {
    Unit.PERCENT: _l("Percent"),
    Unit.NUMBER: _l("Number"),
    Unit.DAYS: _l("Days"),
    Unit.MONTHS: _l("Months"),
    Unit.YES_NO: _l("Yes or no"),
}

#: A unit as said beside a value field, with its bounds.
UNIT_HINTS = {
    Unit.PERCENT: _l("percent (0 to 100)"),
    Unit.NUMBER: _l("number"),
    Unit.DAYS: _l("days"),
    Unit.MONTHS: _l("months"),
    Unit.YES_NO: _l("yes or no"),
}

DIRECTION_LABELS = {Direction.HIGHER: _l("Higher is better"), Direction.LOWER: _l("Lower is better")}

#: A measurement's state as its badge says it.
MEASUREMENT_STATE_LABELS = {
    MeasurementState.REPORTED: _l("Reported, awaiting validation"),
    MeasurementState.VALIDATED: _l("Validated"),
    MeasurementState.SENT_BACK: _l("Sent back"),
}

#: A measurement's state as a mark beside a value in a table ("awaiting validation").
MEASUREMENT_STATE_MARKS = {
    MeasurementState.REPORTED: _l("awaiting validation"),
    MeasurementState.VALIDATED: _l("validated"),
    MeasurementState.SENT_BACK: _l("sent back"),
}

MEASUREMENT_EVENT_LABELS = {
    MeasurementEvent.REPORTED: _l("Reported"),
    MeasurementEvent.CORRECTED: _l("Corrected"),
    MeasurementEvent.VALIDATED: _l("Validated"),
    MeasurementEvent.SENT_BACK: _l("Sent back"),
    MeasurementEvent.IMPORTED: _l("Imported"),
}


def unit_label(value: str) -> str:
    """An indicator's unit in the user's language ("Percent")."""
    return str(UNIT_LABELS.get(Unit(value), value))


def unit_hint(value: str) -> str:
    """An indicator's unit as said beside a value field ("percent (0 to 100)")."""
    return str(UNIT_HINTS.get(Unit(value), value))


def direction_label(value: str) -> str:
    """ "Higher is better" or "Lower is better"."""
    return str(DIRECTION_LABELS.get(Direction(value), value))


def measurement_state_label(value: str) -> str:
    """A measurement's state for its badge ("Reported, awaiting validation")."""
    return str(MEASUREMENT_STATE_LABELS.get(MeasurementState(value), value))


def measurement_state_mark(value: str) -> str:
    """A measurement's state as marked beside a value ("awaiting validation")."""
    return str(MEASUREMENT_STATE_MARKS.get(MeasurementState(value), value))


def measurement_event_label(value: str) -> str:
    """What a row of a measurement's history records ("Corrected")."""
    return str(MEASUREMENT_EVENT_LABELS.get(MeasurementEvent(value), value))


def event_label(value: str) -> str:
    """The name of a history event in the current language."""
    return str(EVENT_LABELS[HistoryEvent(value)])


EXTENSION_STATE_LABELS = {
    ExtensionState.PENDING: _l("waiting for a decision"),
    ExtensionState.APPROVED: _l("approved"),
    ExtensionState.REJECTED: _l("rejected"),
}


def extension_state_label(value: str) -> str:
    """The name of an extension request's state in the current language."""
    return str(EXTENSION_STATE_LABELS[ExtensionState(value)])


def kind_label(value: str) -> str:
    """The name of a kind of mail in the current language."""
    return str(KIND_LABELS[NotificationKind(value)])


def priority_label(value: str) -> str:
    """The name of a priority in the current language."""
    return str(PRIORITY_LABELS[Priority(value)])


def response_label(value: str) -> str:
    """The name of an office response in the current language."""
    return str(RESPONSE_LABELS[ResponseKind(value)])


def role_label(value: str) -> str:
    """The name of a role in the current language."""
    return str(ROLE_LABELS[Role(value)])


def status_label(value: str) -> str:
    """The name of a status in the current language."""
    return str(STATUS_LABELS[Status(value)])


def language_choices() -> list[tuple[str, str]]:
    """(code, name in that language) of every language the interface speaks."""
    from babel import Locale
    from flask import current_app

    return [
        (code, Locale.parse(code).get_display_name(code).capitalize())
        for code in current_app.config["TRACKER_LANGUAGES"]
    ]


def locale_code() -> str:
    """The current locale as a BCP 47 tag for the lang attribute, e.g. ``en`` or ``pt-BR``."""
    return str(get_locale()).replace("_", "-")


def locale_is_rtl() -> bool:
    """True when the current locale is written right to left."""
    return get_locale().character_order == "right-to-left"
