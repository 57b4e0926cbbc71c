"""The API's indicators (/api/v1/indicators): the list, one indicator with every office's baseline and
target, creating one, an indicator's values, and an office's value for a quarter (PUT).

The routes register on the API blueprint of views.py (which imports this module last), so they share
its token authentication, its problem+json errors and its helpers. Writes go through the same
commands as the pages (tracker/indicators/services.py); reads filter with queries.visible, so a
value not yet validated is seen only by its office, reviewers and admins, as on the site.
:func:`openapi_paths` and :func:`openapi_schemas` describe the routes for openapi.py.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from flask import request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.exceptions import Forbidden, NotFound
from werkzeug.wrappers import Response

from tracker.actions import evidence
from tracker.actions.commands import StateConflict, WorkflowError
from tracker.api import openapi, schemas
from tracker.api.schemas import Field, Invalid, Spec
from tracker.api.views import Problem, _commit, _json, _json_body, _now, _refused, _user, bp
from tracker.extensions import db
from tracker.indicators import queries, services
from tracker.indicators.models import (
    Direction,
    Indicator,
    IndicatorTarget,
    Measurement,
    MeasurementState,
    Unit,
)
from tracker.models import Office
from tracker.offices.services import find_office
from tracker.permissions import Perm, can, can_somewhere, require
from tracker.quarters import Quarter

_UNITS = tuple(u.value for u in Unit)
_DIRECTIONS = tuple(d.value for d in Direction)
_STATES = tuple(s.value for s in MeasurementState)
#: A quarter as the API writes it (the form Quarter.parse also reads, made strict).
_QUARTER = re.compile(r"[0-9]{4}Q[1-4]")


def _quarter_problem(text: str) -> str | None:
    """Why ``text`` is not a quarter written like 2026Q3, or None."""
    try:
        if _QUARTER.fullmatch(text):
            Quarter.parse(text)
            return None
    except ValueError:
        pass
    return _("Give a quarter such as 2026Q3.")


def _quarter(description: str) -> Field:
    return Field(
        "string", description, min_length=6, max_length=6, pattern=_QUARTER.pattern, problem=_quarter_problem
    )


# --- the inputs ------------------------------------------------------------------------------------

INDICATOR_FILTERS: Spec = {
    "archived": Field("boolean", "true: archived indicators instead of those in use."),
    **schemas.PAGE,
}

INDICATOR_CREATE: Spec = {
    "code": Field(
        "string",
        "Stable reference, e.g. IND-ONLINE (kept upper case).",
        required=True,
        min_length=1,
        max_length=32,
        pattern=schemas.CODE_PATTERN,
    ),
    "name": Field("string", "What is measured.", required=True, min_length=1, max_length=200, blank=False),
    "unit": Field(
        "string", "What the values count (yes_no: 1 for yes, 0 for no).", required=True, enum=_UNITS
    ),
    "direction": Field(
        "string", "Whether a higher or a lower value is better (default higher).", enum=_DIRECTIONS
    ),
    "definition": Field(
        "string", "How the value is measured: numerator, denominator, source.", nullable=True, max_length=5000
    ),
    "recommendation_id": Field(
        "integer",
        "Id of the recommendation whose effect it measures, or null.",
        nullable=True,
        minimum=1,
        maximum=schemas.MAX_ID,
    ),
}

MEASUREMENT_FILTERS: Spec = {
    "office": Field("string", "Office code, e.g. SG (any case).", min_length=1, max_length=8),
    "from": _quarter("Only quarters from this one on, e.g. 2026Q1."),
    "to": _quarter("Only quarters up to this one, e.g. 2026Q4."),
    "state": Field("string", "Only values in this review state.", enum=_STATES),
    **schemas.PAGE,
}

#: The body of a PUT besides ``value``, whose type depends on the indicator (see _value).
MEASUREMENT_FIELDS: Spec = {
    "note": Field(
        "string",
        "A note for reviewers and the history; left out or null: none.",
        nullable=True,
        max_length=5000,
    ),
    "evidence_url": Field(
        "string",
        "An http(s) link to where the value can be checked; left out or null keeps the one there.",
        nullable=True,
        max_length=evidence.MAX_LINK_LENGTH,
        pattern=r"[Hh][Tt][Tt][Pp][Ss]?://[^ ]+",
        problem=evidence.link_problem,
    ),
}
_VALUE_SCHEMA = {
    "type": ["number", "boolean"],
    "minimum": 0,
    "description": "The value, within the unit's bounds (a percent at most 100); for a yes/no "
    "indicator true or false (or 1 or 0).",
}


def _value(indicator: Indicator, data: dict[str, Any]) -> tuple[float | None, list[tuple[str | None, str]]]:
    """The body's ``value`` as a float within the unit's bounds, or the error naming it."""
    if "value" not in data:
        return None, [("value", _("%(field)s is required.", field="value"))]
    raw = data["value"]
    if isinstance(raw, bool):
        if indicator.unit != Unit.YES_NO:
            return None, [("value", _("Give a number: true and false are for yes/no indicators."))]
        return (1.0 if raw else 0.0), []
    if not isinstance(raw, int | float):
        return None, [
            ("value", _("Give yes or no.") if indicator.unit == Unit.YES_NO else _("Give a number."))
        ]
    try:
        number = float(raw)
    except OverflowError:  # an integer beyond any float
        return None, [("value", _("The value is too high."))]
    if problem := services.value_problem(indicator.unit, number):
        return None, [("value", problem)]
    return number, []


# --- the representations -----------------------------------------------------------------------------


def indicator_json(indicator: Indicator) -> dict[str, Any]:
    """An indicator; needs its recommendation loaded."""
    recommendation = indicator.recommendation
    return {
        "id": indicator.id,
        "code": indicator.code,
        "name": indicator.name,
        "definition": indicator.definition or "",
        "unit": indicator.unit,
        "direction": indicator.direction,
        "period": indicator.period,
        "recommendation": (
            {"id": recommendation.id, "code": recommendation.code} if recommendation is not None else None
        ),
        "archived": indicator.archived_at is not None,
        "created_at": schemas.timestamp(indicator.created_at),
        "updated_at": schemas.timestamp(indicator.updated_at),
    }


def goal_json(target: IndicatorTarget) -> dict[str, Any]:
    """An office's baseline and target; needs its office loaded."""
    return {
        "office": target.office.code,
        "baseline_value": target.baseline_value,
        "baseline_period": target.baseline_period,
        "target_value": target.target_value,
        "target_period": target.target_period,
    }


def measurement_json(measurement: Measurement, indicator: Indicator) -> dict[str, Any]:
    """A value; needs its office and reporter loaded."""
    reporter = measurement.reported_by
    return {
        "id": measurement.id,
        "indicator": indicator.code,
        "office": measurement.office.code,
        "period": measurement.period,
        "value": measurement.value,
        "state": measurement.state,
        "note": measurement.note,
        "evidence_url": measurement.evidence_url,
        "evidence_file": measurement.evidence_filename,
        "review_note": measurement.review_note,
        "reported_by": reporter.email if reporter is not None else None,
        "reported_at": schemas.timestamp(measurement.reported_at),
        "reviewed_at": schemas.timestamp(measurement.reviewed_at),
        "version": measurement.version,
    }


# --- the routes ----------------------------------------------------------------------------------------


@bp.get("/indicators")
def indicators() -> Response:
    """A page of indicators, by code: those in use, or the archived ones."""
    require(_user(), Perm.VIEW_INDICATORS)
    query = schemas.parse_query(INDICATOR_FILTERS, request.args)
    archived = Indicator.archived_at.is_not(None) if query["archived"] else Indicator.archived_at.is_(None)
    select = (
        sa.select(Indicator)
        .where(archived)
        .options(joinedload(Indicator.recommendation))
        .order_by(Indicator.code)
    )
    page = db.paginate(select, page=query["page"], per_page=query["per_page"], error_out=False, count=True)
    return _json(schemas.page_json(page, [indicator_json(i) for i in page.items]))


@bp.post("/indicators")
def create_indicator() -> Response:
    """Create an indicator (reviewers and admins); 409 if its code is taken."""
    user = _user()
    require(user, Perm.MANAGE_INDICATORS)
    data = schemas.validate_body(INDICATOR_CREATE, _json_body())
    fields = services.IndicatorFields(
        code=data["code"],
        name=data["name"],
        unit=data["unit"],
        direction=data.get("direction") or Direction.HIGHER.value,
        definition=data.get("definition") or "",
        recommendation_id=data.get("recommendation_id"),
    )
    try:
        indicator = services.save_indicator(user, fields, _now())
    except StateConflict as exc:
        raise Problem(409, exc.message, errors=[(exc.field, exc.message)]) from None
    except WorkflowError as exc:
        _refused(exc)
    _commit()
    return _json(_indicator_detail(indicator), 201, location=url_for(".indicator", id=indicator.id))


@bp.get("/indicators/<int:id>")
def indicator(id: int) -> Response:
    """One indicator, with each office's baseline and target."""
    return _json(_indicator_detail(_indicator(id)))


@bp.get("/indicators/<int:id>/measurements")
def measurements(id: int) -> Response:
    """A page of an indicator's values that the user may see, newest quarter first, then by office."""
    user = _user()
    found = _indicator(id)
    query = schemas.parse_query(MEASUREMENT_FILTERS, request.args)
    where = [Measurement.indicator_id == found.id, queries.visible(user)]
    if query["office"] is not None:
        office = find_office(query["office"])
        if office is None:
            raise Invalid([("office", _("There is no office with the code %(code)s.", code=query["office"]))])
        where.append(Measurement.office_id == office.id)
    if query["from"] is not None and query["to"] is not None and query["from"] > query["to"]:
        raise Invalid([("from", _("from comes after to."))])
    if query["from"] is not None:
        where.append(Measurement.period >= query["from"])  # YYYYQn sorts in time order
    if query["to"] is not None:
        where.append(Measurement.period <= query["to"])
    if query["state"] is not None:
        where.append(Measurement.state == query["state"])
    select = (
        sa.select(Measurement)
        .join(Office, Office.id == Measurement.office_id)
        .where(*where)
        .options(joinedload(Measurement.office), joinedload(Measurement.reported_by))
        .order_by(Measurement.period.desc(), Office.code, Measurement.id)
    )
    page = db.paginate(select, page=query["page"], per_page=query["per_page"], error_out=False, count=True)
    return _json(schemas.page_json(page, [measurement_json(m, found) for m in page.items]))


@bp.put("/indicators/<int:id>/measurements/<office_code>/<period>")
def put_measurement(id: int, office_code: str, period: str) -> Response:
    """Report or correct an office's value for a quarter: 201 when new, 200 when corrected or unchanged.

    The same command as the reporting page: the office's focal points (reviewers and admins for any
    office), quarters that have ended, the unit's bounds; a corrected value awaits validation again.
    """
    user, now = _user(), _now()
    found = _indicator(id)
    if not can_somewhere(user, Perm.REPORT_MEASUREMENT):
        raise Forbidden()
    office = find_office(office_code)
    if office is None:
        raise NotFound()
    if not can(user, Perm.REPORT_MEASUREMENT, office):
        # Offices and their validated values are public; refusing openly hides nothing.
        raise Problem(403, _("You may not report values for %(office)s.", office=office.code))
    data = _json_body()
    if not isinstance(data, dict):
        raise Invalid([(None, _("The body must be a JSON object."))])
    errors: list[tuple[str | None, str]] = []
    quarter = None
    if problem := _quarter_problem(period):  # as documented: 2026Q3, nothing looser
        errors.append(("period", problem))
    else:
        quarter = Quarter.parse(period)
    value, value_errors = _value(found, data)
    errors.extend(value_errors)
    fields: dict[str, Any] = {}
    try:
        fields = schemas.validate_body(MEASUREMENT_FIELDS, {k: v for k, v in data.items() if k != "value"})
    except Invalid as exc:
        errors.extend(exc.errors)
    if errors or quarter is None or value is None:
        raise Invalid(errors)
    entry = services.Report(
        value=value, note=fields.get("note") or "", evidence_url=fields.get("evidence_url")
    )
    try:
        measurement = services.report(user, found, office, quarter, entry, now)
    except StateConflict as exc:  # a concurrent first report of the same quarter
        raise Problem(409, exc.message) from None
    except WorkflowError as exc:
        _refused(exc)
    created = measurement is not None and measurement.version == 1
    _commit()
    current = _measurement(found, office, quarter)
    location = url_for(".put_measurement", id=found.id, office_code=office.code, period=str(quarter))
    return _json(
        measurement_json(current, found), 201 if created else 200, location=location if created else None
    )


# --- helpers ---------------------------------------------------------------------------------------------


def _indicator(indicator_id: int) -> Indicator:
    """The indicator with its recommendation; 404 if there is none (every role may read indicators)."""
    require(_user(), Perm.VIEW_INDICATORS)
    found = db.session.scalar(
        sa.select(Indicator).where(Indicator.id == indicator_id).options(joinedload(Indicator.recommendation))
    )
    if found is None:
        raise NotFound()
    return found


def _indicator_detail(indicator: Indicator) -> dict[str, Any]:
    """An indicator with every office's baseline and target, by office code."""
    goals = db.session.scalars(
        sa.select(IndicatorTarget)
        .join(Office, Office.id == IndicatorTarget.office_id)
        .where(IndicatorTarget.indicator_id == indicator.id)
        .options(selectinload(IndicatorTarget.office))
        .order_by(Office.code)
    )
    return {**indicator_json(indicator), "offices": [goal_json(g) for g in goals]}


def _measurement(indicator: Indicator, office: Office, period: Quarter) -> Measurement:
    """The office's value of the quarter, with what its representation shows, as saved."""
    return db.session.scalars(
        sa.select(Measurement)
        .where(
            Measurement.indicator_id == indicator.id,
            Measurement.office_id == office.id,
            Measurement.period == str(period),
        )
        .options(joinedload(Measurement.office), joinedload(Measurement.reported_by))
        .execution_options(populate_existing=True)
    ).one()


# --- the OpenAPI description (openapi.py adds it to the document) ----------------------------------------

_REF = "#/components/schemas/"
_S = {"type": "string"}
_S_NULL = {"type": ["string", "null"]}
_NUM_NULL = {"type": ["number", "null"]}
_QUARTER_NULL = {"type": ["string", "null"], "pattern": f"^{_QUARTER.pattern}$"}
_OFFICE_CODE = {
    "name": "office_code",
    "in": "path",
    "required": True,
    "description": "Office code, e.g. SG (any case).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 8},
    "example": "SG",
}
_PERIOD = {
    "name": "period",
    "in": "path",
    "required": True,
    "description": "The quarter, e.g. 2026Q3; one that has ended in the office's time zone.",
    "schema": {"type": "string", "pattern": f"^{_QUARTER.pattern}$"},
    "example": "2026Q3",
}
_INDICATOR_ID = {**openapi._ID, "example": 1}


def openapi_paths() -> dict[str, Any]:
    """The paths of the indicator routes, for the OpenAPI document."""
    op, ok = openapi._operation, openapi._ok
    put_body = schemas.body_schema(MEASUREMENT_FIELDS)
    put_body["properties"] = {"value": _VALUE_SCHEMA, **put_body["properties"]}
    put_body["required"] = ["value"]
    put_body["examples"] = [{"value": 72.5, "note": "From the annual statistics."}]
    put = op(
        "putMeasurement",
        "Report or correct an office's value for a quarter.",
        (200, ok("Corrected, or unchanged (nothing was written).", "Measurement")),
        openapi._WRITE,
        parameters=[_INDICATOR_ID, _OFFICE_CODE, _PERIOD],
        body=put_body,
        description=(
            "The office's focal points report their own office's values; reviewers and admins any "
            "office's (others: 403). The quarter must have ended; a corrected value goes back to "
            "`reported` and awaits validation again. 404 for an unknown indicator or office."
        ),
    )
    put["responses"]["201"] = ok("Reported: the quarter had no value.", "Measurement", created=True)
    return {
        "/indicators": {
            "get": op(
                "listIndicators",
                "A page of indicators, by code.",
                (200, ok("A page.", "IndicatorPage")),
                (422,),
                parameters=schemas.query_parameters(INDICATOR_FILTERS),
            ),
            "post": op(
                "createIndicator",
                "Create an indicator (reviewers and admins).",
                (201, ok("Created.", "IndicatorDetail", created=True)),
                openapi._WRITE,
                body=schemas.body_schema(INDICATOR_CREATE),
                description="409 if another indicator has the code (`errors` names `code`).",
            ),
        },
        "/indicators/{id}": {
            "get": op(
                "getIndicator",
                "One indicator, with each office's baseline and target.",
                (200, ok("The indicator.", "IndicatorDetail")),
                (404,),
                parameters=[openapi._ID],
            )
        },
        "/indicators/{id}/measurements": {
            "get": op(
                "listMeasurements",
                "A page of an indicator's values, newest quarter first.",
                (200, ok("A page.", "MeasurementPage")),
                (404, 422),
                parameters=[openapi._ID, *schemas.query_parameters(MEASUREMENT_FILTERS)],
                description=(
                    "Validated values of every office are visible to every user; values not yet "
                    "validated (reported, sent back) only to their office, reviewers and admins."
                ),
            )
        },
        "/indicators/{id}/measurements/{office_code}/{period}": {"put": put},
    }


def openapi_schemas() -> dict[str, Any]:
    """The representations of the indicator routes, for the OpenAPI document's components."""
    indicator = {
        "id": {"type": "integer"},
        "code": _S,
        "name": _S,
        "definition": _S,
        "unit": {"type": "string", "enum": list(_UNITS)},
        "direction": {"type": "string", "enum": list(_DIRECTIONS)},
        "period": {"type": "string", "enum": ["quarterly"]},
        "recommendation": {
            "anyOf": [
                schemas._object({"id": {"type": "integer"}, "code": _S}, "The recommendation."),
                {"type": "null"},
            ],
            "description": "The recommendation whose effect it measures, if any.",
        },
        "archived": {"type": "boolean"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    }
    goal = schemas._object(
        {
            "office": {**_S, "description": "Office code."},
            "baseline_value": _NUM_NULL,
            "baseline_period": {**_QUARTER_NULL, "description": "The quarter the baseline was measured in."},
            "target_value": _NUM_NULL,
            "target_period": {
                **_QUARTER_NULL,
                "description": "The quarter by which the target is to be reached.",
            },
        },
        "An office's baseline and target for the indicator.",
    )
    measurement = schemas._object(
        {
            "id": {"type": "integer"},
            "indicator": {**_S, "description": "Indicator code."},
            "office": {**_S, "description": "Office code."},
            "period": {"type": "string", "pattern": f"^{_QUARTER.pattern}$"},
            "value": {"type": "number", "description": "For a yes/no indicator, 1 for yes and 0 for no."},
            "state": {"type": "string", "enum": list(_STATES)},
            "note": _S_NULL,
            "evidence_url": _S_NULL,
            "evidence_file": {**_S_NULL, "description": "Name of the uploaded evidence file (site only)."},
            "review_note": {**_S_NULL, "description": "Why a reviewer sent the value back."},
            "reported_by": {**_S_NULL, "description": "Email of who reported the current value."},
            "reported_at": {"type": "string", "format": "date-time"},
            "reviewed_at": {"type": ["string", "null"], "format": "date-time"},
            "version": {"type": "integer", "minimum": 1, "description": "Moves on with every change."},
        },
        "One office's value of an indicator for a quarter.",
    )
    return {
        "Indicator": schemas._object(indicator, "A measured result that offices report each quarter."),
        "IndicatorDetail": schemas._object(
            {**indicator, "offices": {"type": "array", "items": goal, "description": "By office code."}},
            "An indicator with each office's baseline and target.",
        ),
        "IndicatorPage": schemas.page_schema({"$ref": _REF + "Indicator"}, "A page of indicators."),
        "Measurement": measurement,
        "MeasurementPage": schemas.page_schema({"$ref": _REF + "Measurement"}, "A page of values."),
    }
