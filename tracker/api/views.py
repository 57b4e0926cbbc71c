"""The REST API under /api/v1: JSON in and out, personal tokens, problem+json errors.

The views are thin: they parse and validate (schemas.py), call the same services as the pages
(so the workflow and permissions.py decide exactly as they do in the browser), commit, and
serialise. Sign-in is by ``Authorization: Bearer <token>`` only; cookies are never looked at here,
which is why the blueprint is exempt from CSRF. Every error is ``application/problem+json``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from flask import Blueprint, current_app, g, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import Forbidden, HTTPException, MethodNotAllowed, NotFound, default_exceptions
from werkzeug.http import HTTP_STATUS_CODES, parse_etags
from werkzeug.routing import RoutingException
from werkzeug.wrappers import Response

from tracker.actions import commands, extensions
from tracker.actions import services as action_services
from tracker.actions.queries import ActionFilters, action_page
from tracker.api import openapi, schemas
from tracker.api.auth import bearer_secret, user_for_secret
from tracker.api.schemas import Invalid
from tracker.extensions import db, login_manager
from tracker.models import (
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    Source,
    User,
    normalise_email,
)
from tracker.offices import services as office_services
from tracker.ops.logs import request_id
from tracker.permissions import Perm, can_somewhere, require
from tracker.recommendations import services as recommendation_services

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")

#: Largest request body the API reads (JSON only; evidence files are uploaded on the site).
MAX_BODY_BYTES = 1024 * 1024
#: Methods the catch-all answers (with 404, or 405 for a known path); OPTIONS is answered below.
_OTHER_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "QUERY"]
_PUBLIC_ENDPOINTS = {"api.openapi_document", "api.not_found"}
_CHALLENGE = 'Bearer realm="tracker"'


class Problem(Exception):  # noqa: N818 - it is what the client receives
    """An error to answer with as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[tuple[str | None, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors
        self.headers, self.extra = headers or {}, extra


def problem_response(
    status: int,
    detail: str,
    errors: list[tuple[str | None, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 9457 problem: type, title, status, detail, and for 422 the refused fields."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = [{"field": field, "message": message} for field, message in errors]
    body.update(extra)
    body["request_id"] = request_id()  # the X-Request-ID of the answer, to quote when reporting it
    response = Response(json.dumps(body, ensure_ascii=False), status, mimetype="application/problem+json")
    response.headers.update(headers or {})
    return response


# --- authentication, limits, errors ----------------------------------------------------------


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    """Recognise the bearer token; answer OPTIONS; refuse everything else without a valid token."""
    # Whatever cookie came along, nobody is signed in here until a token says who it is.
    g._login_user = login_manager.anonymous_user()
    request.max_content_length = MAX_BODY_BYTES
    if request.method == "OPTIONS":
        return _options_response()
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return None
    secret = bearer_secret(request.headers.get("Authorization"))
    if secret is None:
        raise Problem(
            401,
            _("Send a personal API token: Authorization: Bearer <token> (create one on your profile page)."),
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    user = user_for_secret(secret, _now())
    if user is None:
        raise Problem(
            401,
            _("This token is unknown or revoked, or its user is deactivated."),
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )
    g.api_user = g._login_user = user
    return None


@bp.after_request
def no_caching(response: Response) -> Response:
    """Personal data: never stored by caches; the answer depends on the token."""
    if request.endpoint == "api.openapi_document":
        response.headers.setdefault("Cache-Control", "public, max-age=300")
    else:
        response.headers.setdefault("Cache-Control", "no-store")
        response.vary.add("Authorization")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.errorhandler(Problem)
def _problem(error: Problem) -> Response:
    db.session.rollback()
    return problem_response(error.status, error.detail, error.errors, error.headers, **error.extra)


@bp.errorhandler(Invalid)
def _invalid(error: Invalid) -> Response:
    db.session.rollback()
    fields = ", ".join(sorted({f for f, _m in error.errors if f}))
    detail = _("Refused: %(fields)s.", fields=fields) if fields else _("The request was refused.")
    detail = f"{detail} {error.errors[0][1]}"
    return problem_response(422, detail, error.errors)


def http_error(error: HTTPException) -> Response:
    """Any HTTP error raised in the API (routing, permissions, size limits) as problem+json."""
    db.session.rollback()
    code = error.code or 500
    details = {
        400: _("The request could not be understood."),
        403: _("You do not have permission to do this."),
        404: _("There is nothing here, or you may not see it."),
        405: _("This method is not allowed here; see the Allow header."),
        413: _("The body is too large: at most %(num)d bytes.", num=MAX_BODY_BYTES),
        500: _("An unexpected error occurred. It has been logged."),
    }
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return problem_response(
        code, details.get(code, error.description or HTTP_STATUS_CODES.get(code, "Error")), headers=headers
    )


bp.register_error_handler(HTTPException, http_error)
# Flask prefers a handler for the status code, even the app's, over one for a class: name each code,
# so that the site's HTML error pages never answer an API request.
for _code in default_exceptions:
    bp.register_error_handler(_code, http_error)


# --- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _user() -> User:
    return g.api_user


def _json_body() -> Any:
    """The request's JSON body: 413 if too large, 415 if not JSON, 400 if malformed."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Problem(413, _("The body is too large: at most %(num)d bytes.", num=MAX_BODY_BYTES))
    mimetype = request.mimetype
    if mimetype != "application/json" and not (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        raise Problem(415, _("Send the body as JSON, with Content-Type: application/json."))
    raw = request.get_data(cache=True)  # 413 past max_content_length, also without Content-Length
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(400, _("The body is not valid JSON: %(error)s", error=str(exc)[:200])) from None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json(data: Any, status: int = 200, etag: int | None = None, location: str | None = None) -> Response:
    response = current_app.json.response(data)
    response.status_code = status
    if etag is not None:
        response.set_etag(str(etag), weak=True)
    if location is not None:
        response.headers["Location"] = location
    return response


def _person(field: str, email: str | None) -> User | None:
    """The user with this email, for a field naming a person; 422 if nobody has it."""
    if email is None:
        return None
    user = db.session.scalar(sa.select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise Invalid([(field, _("Nobody has the email address %(email)s.", email=email))])
    return user


def _options_response() -> Response:
    allowed = _allowed_methods()
    if not allowed:
        raise NotFound()
    response = Response(status=204)
    response.headers["Allow"] = ", ".join(sorted(allowed))
    return response


def _allowed_methods() -> set[str]:
    """The methods the API's routes accept for this request's path (the catch-all left out)."""
    adapter = current_app.create_url_adapter(request)
    allowed: set[str] = set()
    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        try:
            rule, _args = adapter.match(method=method, return_rule=True)  # type: ignore[union-attr]
        except (HTTPException, RoutingException):
            continue
        if rule.endpoint != "api.not_found":
            allowed.add(method)
    if allowed:
        allowed.add("OPTIONS")
        if "GET" in allowed:
            allowed.add("HEAD")
    return allowed


_PLAN_FIELDS = {"owner_id": "owner", "deputy_id": "deputy", "recommendation_id": "recommendation_id"}


def _refused(error: Exception, fields: dict[str, str] | None = None) -> NoReturn:
    """A service's refusal (WorkflowError, PlanError, RecommendationError) as a 422 naming its field."""
    field = getattr(error, "field", None)
    if field is not None and fields:
        field = fields.get(field, field)
    raise Invalid([(field, getattr(error, "message", str(error)))])


# --- the document and the user ----------------------------------------------------------------


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of this API (no token needed)."""
    return _json(openapi.document(current_app.config["TRACKER_BASE_URL"] + bp.url_prefix))


@bp.get("/me")
def me() -> Response:
    """The user the token belongs to."""
    return _json(schemas.me_json(_user()))


@bp.get("/offices")
def offices() -> Response:
    """The offices the user may see, by code."""
    return _json({"items": [schemas.office_json(o) for o in action_services.visible_offices(_user())]})


# --- recommendations --------------------------------------------------------------------------


@bp.get("/recommendations")
def recommendations() -> Response:
    """A page of recommendations, filtered (every role may read them all)."""
    user = _user()
    require(user, Perm.VIEW_RECOMMENDATION)
    query = schemas.parse_query(schemas.RECOMMENDATION_FILTERS, request.args)
    filters = recommendation_services.Filters(
        q=(query["q"] or "").strip(),
        source_id=query["source"],
        theme=query["theme"] or "",
        priority=query["priority"] or "",
        archived=bool(query["archived"]),
    )
    page = recommendation_services.list_recommendations(user, filters, query["page"], query["per_page"])
    return _json(schemas.page_json(page, [schemas.recommendation_json(r) for r in page.items]))


@bp.get("/recommendations/<int:id>")
def recommendation(id: int) -> Response:
    """One recommendation."""
    require(_user(), Perm.VIEW_RECOMMENDATION)
    found = recommendation_services.get_recommendation(id) or _not_found()
    return _json(schemas.recommendation_json(found))


@bp.post("/recommendations")
def create_recommendation() -> Response:
    """Write a new recommendation (reviewers and admins)."""
    user = _user()
    require(user, Perm.EDIT_RECOMMENDATION)
    data = schemas.validate_body(schemas.RECOMMENDATION_CREATE, _json_body())
    source = db.session.get(Source, data["source_id"])
    if source is None or source.archived_at is not None:  # as the page offers: sources in use
        raise Invalid([("source_id", _("Choose a source in use (GET a recommendation to see its source)."))])
    try:
        saved = recommendation_services.save_recommendation(
            user,
            None,
            code=data["code"],
            title=data["title"],
            text=data["text"],
            theme=data["theme"],
            priority=data.get("priority") or "medium",
            source_id=data["source_id"],
            target_date=data.get("target_date"),
            now=_now(),
        )
    except recommendation_services.RecommendationError as exc:
        _refused(exc)
    _commit()
    location = url_for(".recommendation", id=saved.id)
    return _json(schemas.recommendation_json(saved), 201, location=location)


@bp.patch("/recommendations/<int:id>")
def update_recommendation(id: int) -> Response:
    """Change a recommendation's fields, or archive or restore it (reviewers and admins)."""
    user = _user()
    require(user, Perm.EDIT_RECOMMENDATION)
    found = recommendation_services.get_recommendation(id) or _not_found()
    data = schemas.validate_body(schemas.RECOMMENDATION_PATCH, _json_body(), partial=True)
    archived = data.pop("archived", None)
    now = _now()
    if data:
        if "source_id" in data and db.session.get(Source, data["source_id"]) is None:
            raise Invalid([("source_id", _("There is no source with this id."))])
        try:
            recommendation_services.save_recommendation(
                user,
                found,
                code=data.get("code", found.code),
                title=data.get("title", found.title),
                text=data.get("text", found.text),
                theme=data.get("theme", found.theme),
                priority=data.get("priority") or found.priority,
                source_id=data.get("source_id", found.source_id),
                target_date=data.get("target_date", found.target_date),
                now=now,
            )
        except recommendation_services.RecommendationError as exc:
            _refused(exc)
    if archived is not None and archived != (found.archived_at is not None):
        recommendation_services.set_archived(user, found, archived, now)
    _commit()
    return _json(schemas.recommendation_json(found))


@bp.get("/recommendations/<int:id>/history")
def recommendation_history(id: int) -> Response:
    """Who changed what of a recommendation and of the responses the user sees, newest first."""
    from tracker.recommendations import history

    user = _user()
    require(user, Perm.VIEW_RECOMMENDATION)
    found = recommendation_services.get_recommendation(id) or _not_found()
    return _json({"items": [schemas.change_json(c) for c in history.history(user, found)]})


# --- actions -----------------------------------------------------------------------------------


@bp.get("/actions")
def actions() -> Response:
    """A page of the actions the user may see: filtered, open ones first, then by deadline."""
    user, now = _user(), _now()
    query = schemas.parse_query(schemas.ACTION_FILTERS, request.args)
    filters = ActionFilters(
        office_code=query["office"],
        status=query["status"],
        recommendation_code=query["recommendation"],
        owner_email=normalise_email(query["owner"]) if query["owner"] else None,
        due_before=query["due_before"],
        due_after=query["due_after"],
        overdue=query["overdue"],
    )
    page = action_page(
        user,
        now,
        filters,
        page=query["page"],
        per_page=query["per_page"],
        options=[selectinload(ActionItem.pending_extension)],
        last_if_beyond=False,  # a page past the end is empty, with the total
    )
    return _json(schemas.page_json(page, [schemas.action_json(item, now) for item in page.items]))


@bp.get("/actions/<int:id>")
def action(id: int) -> Response:
    """One action; its ETag is its version (send it back in If-Match when changing it)."""
    item = _visible_item(id)
    return _json(schemas.action_json(item, _now()), etag=item.version)


@bp.post("/actions")
def create_action() -> Response:
    """Add an action to an office's plan (reviewers and admins), not started."""
    user, now = _user(), _now()
    if not can_somewhere(user, Perm.CREATE_ACTION):  # before the office and the people are looked up
        raise Forbidden()
    data = schemas.validate_body(schemas.ACTION_CREATE, _json_body())
    office = office_services.find_office(data["office"])
    if office is None:
        raise Invalid([("office", _("There is no office with the code %(code)s.", code=data["office"]))])
    owner = _person("owner", data["owner"])
    deputy = _person("deputy", data.get("deputy"))
    fields = office_services.ActionFields(
        title=data["title"],
        recommendation_id=data["recommendation_id"],
        owner_id=owner.id if owner else None,
        deputy_id=deputy.id if deputy else None,
        deadline=data["deadline"],
        description=data.get("description") or "",
    )
    try:
        item = office_services.create_action(user, office, now, fields)
    except office_services.PlanError as exc:
        _refused(exc, _PLAN_FIELDS)
    _commit()
    return _json(
        schemas.action_json(item, now), 201, etag=item.version, location=url_for(".action", id=item.id)
    )


@bp.patch("/actions/<int:id>")
def update_action(id: int) -> Response:
    """Change an action: the workflow fields and the owner or deputy, in one transaction.

    status, progress, note, deadline and evidence_url go through the workflow (as the action
    page); owner and deputy through the plan edit (reviewers and admins, as the edit page). With
    both kinds, the edit comes first and the note goes with the workflow change. If-Match, when
    sent, must name the current version (else 412); without it the current version is used.
    """
    user, now = _user(), _now()
    item = _visible_item(id)
    data = schemas.validate_body(schemas.ACTION_PATCH, _json_body(), partial=True)
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = parse_etags(if_match)
        if not (tags.star_tag or tags.contains_weak(str(item.version))):
            raise Problem(
                412,
                _("The action changed since you read it: it is at version %(num)d.", num=item.version),
                current_version=item.version,
            )
    plan = {k: data[k] for k in ("owner", "deputy") if k in data}
    if plan:  # before the emails are looked up: who is not allowed learns nothing about them
        require(user, Perm.EDIT_ACTION, item)
    workflow = {k: data[k] for k in ("status", "progress", "deadline", "evidence_url") if k in data}
    note = data.get("note", "")
    try:
        if plan:
            owner = _person("owner", plan["owner"]) if "owner" in plan else item.owner
            deputy = _person("deputy", plan["deputy"]) if "deputy" in plan else item.deputy
            fields = office_services.ActionFields(
                title=item.title,
                recommendation_id=item.recommendation_id,
                owner_id=owner.id if owner else None,
                deputy_id=deputy.id if deputy else None,
                deadline=item.deadline,
                description=item.description or "",
                note="" if workflow else note,
            )
            office_services.edit_action(user, item, now, fields, item.version)
        if workflow or not plan:
            commands.record_update(
                user,
                item,
                now,
                commands.UpdateRequest(
                    version=item.version,
                    status=workflow.get("status"),
                    progress=workflow.get("progress"),
                    deadline=workflow.get("deadline"),
                    note=note,
                    evidence_url=workflow.get("evidence_url"),
                ),
            )
        db.session.commit()
    except commands.StateConflict as exc:
        db.session.rollback()
        raise Problem(409, exc.message) from None
    except commands.WorkflowError as exc:
        db.session.rollback()
        _refused(exc, _PLAN_FIELDS)
    except commands.ConflictError as exc:
        db.session.rollback()
        raise Problem(412, _("The action changed meanwhile."), current_version=exc.item.version) from None
    except StaleDataError:  # someone saved between our read and our write
        db.session.rollback()
        raise Problem(
            412 if if_match is not None else 409,
            _("Someone else saved this action at the same moment. Read it again and retry."),
        ) from None
    item = _visible_item(id)
    return _json(schemas.action_json(item, now), etag=item.version)


@bp.get("/actions/<int:id>/updates")
def action_updates(id: int) -> Response:
    """An action's history, newest first, a page at a time."""
    item = _visible_item(id)
    query = schemas.parse_query(schemas.UPDATES_QUERY, request.args)
    select = (
        sa.select(ActionUpdate)
        .where(ActionUpdate.action_item_id == item.id)
        .options(joinedload(ActionUpdate.author), selectinload(ActionUpdate.files))
        .order_by(ActionUpdate.created_at.desc(), ActionUpdate.id.desc())
    )
    page = db.paginate(select, page=query["page"], per_page=query["per_page"], error_out=False, count=True)
    return _json(schemas.page_json(page, [schemas.update_json(u) for u in page.items]))


# --- deadline extensions -------------------------------------------------------------------------


@bp.get("/actions/<int:id>/extensions")
def action_extensions(id: int) -> Response:
    """Every extension request of an action, newest first, with its decision."""
    item = _visible_item(id)
    found = db.session.scalars(
        sa.select(ExtensionRequest)
        .where(ExtensionRequest.action_item_id == item.id)
        .options(joinedload(ExtensionRequest.requested_by), joinedload(ExtensionRequest.decided_by))
        .order_by(ExtensionRequest.requested_at.desc(), ExtensionRequest.id.desc())
    )
    return _json({"items": [schemas.extension_json(e) for e in found]})


@bp.post("/actions/<int:id>/extensions")
def request_extension(id: int) -> Response:
    """Ask for a later deadline with a reason (the office's focal points); a reviewer decides."""
    user, now = _user(), _now()
    item = _visible_item(id)
    data = schemas.validate_body(schemas.EXTENSION_CREATE, _json_body())
    try:
        extension = extensions.request_extension(user, item, now, data["deadline"], data["reason"])
    except commands.WorkflowError as exc:
        db.session.rollback()
        _refused_or_conflict(exc)
    _commit()
    return _json(schemas.extension_json(extension), 201, location=url_for(".action_extensions", id=item.id))


@bp.post("/extensions/<int:id>/decision")
def decide_extension(id: int) -> Response:
    """Approve or reject a pending extension request (reviewers and admins); the requester is told."""
    user, now = _user(), _now()
    extension = extensions.get_extension(user, id)
    if extension is None:
        raise NotFound()
    data = schemas.validate_body(schemas.EXTENSION_DECISION, _json_body())
    try:
        extensions.decide_extension(user, extension, now, data["decision"], data.get("note", ""))
    except commands.WorkflowError as exc:
        db.session.rollback()
        _refused_or_conflict(exc)
    _commit()
    return _json(schemas.extension_json(extension))


def _refused_or_conflict(error: commands.WorkflowError) -> NoReturn:
    """A command's refusal: 409 with the state it is in now, else 422 naming the field."""
    if isinstance(error, commands.StateConflict):
        raise Problem(409, error.message)
    _refused(error)


def _visible_item(action_id: int) -> ActionItem:
    """The item with what it shows loaded; 404 whether missing or out of the user's scope."""
    item = office_services.get_item(_user(), action_id)
    if item is None:
        raise NotFound()
    return item


def _not_found() -> NoReturn:
    raise NotFound()


def _commit() -> None:
    """Commit; a unique key taken by a concurrent request is a 409, not a 500."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("API write refused by a database constraint", exc_info=True)
        raise Problem(409, _("This conflicts with data saved meanwhile (e.g. a code now in use).")) from None


# The indicator routes register on bp when imported (after the helpers they use exist).
from tracker.api import indicators  # noqa: E402, F401

# --- everything else under /api/v1 ----------------------------------------------------------------


@bp.route("/", defaults={"rest": ""}, methods=_OTHER_METHODS)
@bp.route("/<path:rest>", methods=_OTHER_METHODS)
def not_found(rest: str) -> NoReturn:
    """Unknown paths get a problem 404, known paths with another method a 405 with Allow."""
    allowed = _allowed_methods()
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed))
    raise NotFound()
