"""The one place that answers "may this user do this to that object".

Views, the API, exports and mail all ask :func:`can` (or :func:`require`) for single objects and
use :func:`office_scope_clause` to filter lists, so a list never shows what a page would refuse.

Each permission maps every role to one of four answers: allowed everywhere (``ALL``), allowed
for objects of the user's own office (``OWN``; a manager without an office is programme-wide),
for objects of the user's own office strictly (``OFFICE``; a manager without one gets none), or
absent (refused). Inactive and anonymous users may do nothing.

Indicators are the exception to "own office only": validated values are every signed-in user's
to compare (:func:`may_see_measurement`, :func:`measurement_visibility_clause`).
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from flask import abort

from tracker.indicators.models import IndicatorTarget, Measurement, MeasurementState
from tracker.models import (
    ActionItem,
    ActionUpdate,
    BackgroundJob,
    EvidenceFile,
    ExtensionRequest,
    Office,
    OfficeResponse,
    Role,
    User,
)


class Perm(enum.StrEnum):
    """Everything a user may be allowed to do."""

    VIEW_ACTION = "view_action"
    #: Status, progress, note, evidence, and the deadline with a justification.
    UPDATE_ACTION = "update_action"
    #: Title, description, owner, deputy: agreeing the action plan.
    EDIT_ACTION = "edit_action"
    CREATE_ACTION = "create_action"
    #: Put forward an action for the office's own plan; it stays "proposed" until accepted.
    PROPOSE_ACTION = "propose_action"
    #: Accept a proposed action into the plan, or decline it with a note.
    DECIDE_PROPOSAL = "decide_proposal"
    #: Send a recommendation to offices: a response request each, optionally a first action.
    SEND_RECOMMENDATION = "send_recommendation"
    CANCEL_ACTION = "cancel_action"
    VERIFY_ACTION = "verify_action"
    #: Move a verified action back to in progress, with a note.
    REOPEN_ACTION = "reopen_action"
    #: Ask for a later deadline, with a reason (the office's side).
    REQUEST_EXTENSION = "request_extension"
    #: Approve or reject an extension request; set a deadline directly.
    DECIDE_EXTENSION = "decide_extension"
    VIEW_OFFICE = "view_office"
    RESPOND = "respond"
    VIEW_RECOMMENDATION = "view_recommendation"
    EDIT_RECOMMENDATION = "edit_recommendation"
    VIEW_DASHBOARD = "view_dashboard"
    IMPORT_DATA = "import_data"
    MANAGE_USERS = "manage_users"
    MANAGE_OFFICES = "manage_offices"
    MANAGE_OUTBOX = "manage_outbox"
    #: Record someone else's absence (everyone may record their own: see may_record_absence).
    MANAGE_ABSENCES = "manage_absences"
    #: Read the log of security events (sign-ins, second factors, sessions, roles, tokens).
    VIEW_AUDIT = "view_audit"
    #: Read indicators and every office's validated values: exchanging them is the point.
    VIEW_INDICATORS = "view_indicators"
    #: Read values not yet validated (reported or sent back): see may_see_measurement.
    VIEW_UNVALIDATED = "view_unvalidated"
    #: Enter or correct an office's indicator values (by form, import or API).
    REPORT_MEASUREMENT = "report_measurement"
    #: Validate a reported value, or send it back with a note.
    VALIDATE_MEASUREMENT = "validate_measurement"
    #: Create and edit indicators, and set each office's baseline and target.
    MANAGE_INDICATORS = "manage_indicators"


class Scope(enum.Enum):
    """How far a granted permission reaches."""

    ALL = "all"
    OWN = "own_office"
    #: Objects of the user's own office only: unlike OWN, a manager without an office gets none.
    OFFICE = "office_only"


ALL, OWN, OFFICE = Scope.ALL, Scope.OWN, Scope.OFFICE
A, R, M, F = Role.ADMIN, Role.REVIEWER, Role.MANAGER, Role.FOCAL_POINT

#: permission → {role: scope}; a role that is not listed is refused.
RULES: dict[Perm, dict[Role, Scope]] = {
    Perm.VIEW_ACTION: {A: ALL, R: ALL, M: OWN, F: OWN},
    Perm.UPDATE_ACTION: {A: ALL, R: ALL, F: OWN},
    Perm.EDIT_ACTION: {A: ALL, R: ALL},
    Perm.CREATE_ACTION: {A: ALL, R: ALL},
    Perm.PROPOSE_ACTION: {F: OWN},
    Perm.DECIDE_PROPOSAL: {A: ALL, R: ALL},
    Perm.SEND_RECOMMENDATION: {A: ALL, R: ALL},
    Perm.CANCEL_ACTION: {A: ALL, R: ALL},
    Perm.VERIFY_ACTION: {A: ALL, R: ALL},
    Perm.REOPEN_ACTION: {A: ALL, R: ALL},
    Perm.REQUEST_EXTENSION: {F: OWN},
    Perm.DECIDE_EXTENSION: {A: ALL, R: ALL},
    Perm.VIEW_OFFICE: {A: ALL, R: ALL, M: OWN, F: OWN},
    Perm.RESPOND: {A: ALL, R: ALL, F: OWN},
    Perm.VIEW_RECOMMENDATION: {A: ALL, R: ALL, M: ALL, F: ALL},
    Perm.EDIT_RECOMMENDATION: {A: ALL, R: ALL},
    # Everyone has a dashboard; its figures are filtered by office_scope_clause().
    Perm.VIEW_DASHBOARD: {A: ALL, R: ALL, M: ALL, F: ALL},
    Perm.IMPORT_DATA: {A: ALL, R: ALL},
    Perm.MANAGE_USERS: {A: ALL},
    Perm.MANAGE_OFFICES: {A: ALL},
    Perm.MANAGE_OUTBOX: {A: ALL},
    Perm.MANAGE_ABSENCES: {A: ALL},
    Perm.VIEW_AUDIT: {A: ALL},
    Perm.VIEW_INDICATORS: {A: ALL, R: ALL, M: ALL, F: ALL},
    # Unvalidated values: their office (focal points and its managers), reviewers and admins; a
    # programme-wide manager sees validated values only.
    Perm.VIEW_UNVALIDATED: {A: ALL, R: ALL, M: OFFICE, F: OFFICE},
    Perm.REPORT_MEASUREMENT: {A: ALL, R: ALL, F: OWN},
    Perm.VALIDATE_MEASUREMENT: {A: ALL, R: ALL},
    Perm.MANAGE_INDICATORS: {A: ALL, R: ALL},
}


def office_of(obj: Any) -> int:
    """The id of the office an object belongs to (for OWN-scoped permissions)."""
    if isinstance(obj, Office):
        return obj.id
    if isinstance(obj, ActionItem | OfficeResponse | Measurement | IndicatorTarget):
        return obj.office_id
    if isinstance(obj, ActionUpdate | EvidenceFile | ExtensionRequest):
        return obj.action_item.office_id
    raise TypeError(f"{type(obj).__name__} does not belong to an office")


def office_scope(user: User | Any) -> frozenset[int] | None:
    """The offices whose data the user may read: None for all, else a (possibly empty) set."""
    if not _usable(user):
        return frozenset()
    if user.role == Role.FOCAL_POINT or (user.role == Role.MANAGER and user.office_id):
        return frozenset({user.office_id})
    return None


def can(user: User | Any, perm: Perm, obj: Any = None) -> bool:
    """May ``user`` do ``perm`` to ``obj``? ``obj`` is required for OWN-scoped grants."""
    if not _usable(user):
        return False
    scope = RULES[perm].get(Role(user.role))
    if scope is None:
        return False
    if scope is ALL:
        return True
    if obj is None:
        raise TypeError(f"{perm} needs the object it applies to")
    if scope is OFFICE:
        return user.office_id is not None and office_of(obj) == user.office_id
    offices = office_scope(user)
    return offices is None or office_of(obj) in offices


def can_somewhere(user: User | Any, perm: Perm) -> bool:
    """May ``user`` do ``perm`` to anything at all (at least in their own office)?

    For a refusal that must come before the object is known, e.g. before the people a request
    names are looked up (the API), so that who may not act learns nothing about them.
    """
    return _usable(user) and Role(user.role) in RULES[perm]


def require(user: User | Any, perm: Perm, obj: Any = None, *, hide: bool = False) -> None:
    """Abort with 403, or with 404 when ``hide`` is set so that existence does not leak."""
    if not can(user, perm, obj):
        abort(404 if hide else 403)


def office_scope_clause(user: User | Any, office_id_column: Any) -> sa.ColumnElement[bool]:
    """A WHERE clause keeping the rows of the offices the user may read."""
    offices = office_scope(user)
    if offices is None:
        return sa.true()
    if not offices:
        return sa.false()
    return office_id_column.in_(sorted(offices))


def may_see_measurement(user: User | Any, measurement: Measurement) -> bool:
    """A validated value: every signed-in user; any other: its office, reviewers and admins."""
    if measurement.state == MeasurementState.VALIDATED:
        return can(user, Perm.VIEW_INDICATORS)
    return can(user, Perm.VIEW_UNVALIDATED, measurement)


def measurement_visibility_clause(
    user: User | Any, state_column: Any, office_id_column: Any
) -> sa.ColumnElement[bool]:
    """A WHERE clause keeping the measurements the user may read (as may_see_measurement)."""
    if not can(user, Perm.VIEW_INDICATORS):
        return sa.false()
    validated = state_column == MeasurementState.VALIDATED.value
    offices = _unvalidated_offices(user)
    if offices is None:
        return sa.true()
    if not offices:
        return validated
    return sa.or_(validated, office_id_column.in_(sorted(offices)))


def _unvalidated_offices(user: Any) -> frozenset[int] | None:
    # The offices whose unvalidated values the user sees: None for all (as can() answers).
    if not _usable(user):
        return frozenset()
    scope = RULES[Perm.VIEW_UNVALIDATED].get(Role(user.role))
    if scope is ALL:
        return None
    return frozenset({user.office_id}) if scope is OFFICE and user.office_id else frozenset()


def may_record_absence(actor: User | Any, person: User) -> bool:
    """Everyone may record their own absences; admins anyone's."""
    if not _usable(actor):
        return False
    return actor.id == person.id or can(actor, Perm.MANAGE_ABSENCES)


def may_see_job(actor: User | Any, job: BackgroundJob) -> bool:
    """A background job (its page, its file, its cancellation): the person who asked, and admins.

    An export job holds rows of the asker's scope, so nobody else may read it, whatever they may
    read themselves; admins may, to help.
    """
    if not _usable(actor):
        return False
    return actor.id == job.user_id or Role(actor.role) == Role.ADMIN


def _usable(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.active)
