"""The OpenAPI 3.1 document of /api/v1, built from the same tables the views validate with.

Request bodies and query parameters come from schemas.py's Field tables, representations from
its schemas; tests/test_api_schema.py checks that every route is documented (and nothing more)
and runs schemathesis against the app, so the document stays true to the code.
"""

from __future__ import annotations

from typing import Any

from tracker.api import schemas

_PROBLEM = "application/problem+json"
_REF = "#/components/schemas/"

_ERRORS = {
    400: "Malformed JSON.",
    401: "No token, or an unknown or revoked one, or a deactivated user.",
    403: "The user may not do this.",
    404: "Not found, or outside the user's offices.",
    409: "Conflicts with a change saved at the same moment (retry), or a unique code now taken.",
    412: "If-Match does not name the action's current version.",
    413: "The body is larger than 1 MB.",
    415: "The body is not JSON.",
    422: "Refused input: `errors` names each field (types, lengths, workflow rules).",
}


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "content": {_PROBLEM: {"schema": {"$ref": _REF + "Problem"}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "Bearer challenge.",
                "required": True,
                "schema": {"type": "string"},
            }
        }
    return response


def _ok(description: str, schema: str, *, etag: bool = False, created: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + schema}}},
    }
    headers = {}
    if etag:
        headers["ETag"] = {
            "description": 'The action\'s version as a weak tag, W/"<version>".',
            "required": True,
            "schema": {"type": "string"},
        }
    if created:
        headers["Location"] = {
            "description": "Where the new resource is.",
            "required": True,
            "schema": {"type": "string"},
        }
    if headers:
        response["headers"] = headers
    return response


def _operation(
    operation_id: str,
    summary: str,
    ok: tuple[int, dict[str, Any]],
    errors: tuple[int, ...],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    status, response = ok
    operation["responses"] = {str(status): response, **{str(code): _problem(code) for code in (401, *errors)}}
    return operation


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": schemas.MAX_ID},
}
_IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'The ETag read with the action (W/"<version>"); refused with 412 if the action moved on. '
    "Without it, the change applies to the current version.",
    "schema": {"type": "string"},
}
_WRITE = (400, 403, 404, 409, 413, 415, 422)


def document(server: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document, as a JSON-ready dict; its paths are relative to ``server``.

    ``server`` is the API's public address, TRACKER_BASE_URL and the blueprint's prefix, so that
    clients and generated code reach the site the operator configured, not the one they read it on.
    """
    paths = {
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/me": {"get": _operation("getMe", "The user the token belongs to.", (200, _ok("You.", "Me")), ())},
        "/offices": {
            "get": _operation(
                "listOffices", "The offices you may see, by code.", (200, _ok("Offices.", "OfficeList")), ()
            )
        },
        "/recommendations": {
            "get": _operation(
                "listRecommendations",
                "A page of recommendations, by code.",
                (200, _ok("A page.", "RecommendationPage")),
                (422,),
                parameters=schemas.query_parameters(schemas.RECOMMENDATION_FILTERS),
            ),
            "post": _operation(
                "createRecommendation",
                "Write a recommendation (reviewers and admins).",
                (201, _ok("Created.", "Recommendation", created=True)),
                _WRITE,
                body=schemas.body_schema(schemas.RECOMMENDATION_CREATE),
            ),
        },
        "/recommendations/{id}": {
            "get": _operation(
                "getRecommendation",
                "One recommendation.",
                (200, _ok("The recommendation.", "Recommendation")),
                (404,),
                parameters=[_ID],
            ),
            "patch": _operation(
                "updateRecommendation",
                "Change a recommendation, or archive or restore it (reviewers and admins).",
                (200, _ok("Saved.", "Recommendation")),
                _WRITE,
                parameters=[_ID],
                body=schemas.body_schema(schemas.RECOMMENDATION_PATCH, partial=True),
            ),
        },
        "/recommendations/{id}/history": {
            "get": _operation(
                "getRecommendationHistory",
                "Who changed what of a recommendation and of the offices' responses, newest first.",
                (
                    200,
                    {
                        "description": "The changes.",
                        "content": {"application/json": {"schema": schemas.HISTORY_SCHEMA}},
                    },
                ),
                (404,),
                parameters=[_ID],
                description=(
                    "One entry per changed field, creations included (old is null). A change of an "
                    "office's response is listed only if you see that response on the site."
                ),
            )
        },
        "/actions": {
            "get": _operation(
                "listActions",
                "A page of the actions you may see: open ones first, then by deadline.",
                (200, _ok("A page.", "ActionPage")),
                (422,),
                parameters=schemas.query_parameters(schemas.ACTION_FILTERS),
                description="`overdue=false` keeps only the actions that are not overdue.",
            ),
            "post": _operation(
                "createAction",
                "Add an action to an office's plan (reviewers and admins).",
                (201, _ok("Created, not started.", "Action", etag=True, created=True)),
                _WRITE,
                body=schemas.body_schema(schemas.ACTION_CREATE),
            ),
        },
        "/actions/{id}": {
            "get": _operation(
                "getAction",
                "One action.",
                (200, _ok("The action.", "Action", etag=True)),
                (404,),
                parameters=[_ID],
            ),
            "patch": _operation(
                "updateAction",
                "Change an action's status, progress, note, deadline, evidence link, owner or deputy.",
                (200, _ok("Saved.", "Action", etag=True)),
                (*_WRITE, 412),
                parameters=[_ID, _IF_MATCH],
                body=schemas.body_schema(schemas.ACTION_PATCH, partial=True),
                description=(
                    "The workflow of the site applies: who may move which status, and what a move "
                    "needs (a note, evidence; a focal point's new deadline needs a reason in the "
                    "note). owner and deputy are for reviewers and admins. Fields of both kinds "
                    "are saved together or not at all."
                ),
            ),
        },
        "/actions/{id}/extensions": {
            "get": _operation(
                "listActionExtensions",
                "An action's extension requests, newest first, with their decisions.",
                (200, _ok("The requests.", "ExtensionList")),
                (404,),
                parameters=[_ID],
            ),
            "post": _operation(
                "requestExtension",
                "Ask for a later deadline (the office's focal points); a reviewer decides.",
                (201, _ok("The request, pending.", "Extension", created=True)),
                _WRITE,
                parameters=[_ID],
                body=schemas.body_schema(schemas.EXTENSION_CREATE),
                description="Until a decision the current deadline holds. 409 if a request already waits "
                "or the action is closed.",
            ),
        },
        "/extensions/{id}/decision": {
            "post": _operation(
                "decideExtension",
                "Approve or reject a pending extension request (reviewers and admins).",
                (200, _ok("The request, decided.", "Extension")),
                _WRITE,
                parameters=[_ID],
                body=schemas.body_schema(schemas.EXTENSION_DECISION),
                description="Approving moves the action's current deadline; rejecting needs a note. "
                "409 if the request was already decided.",
            )
        },
        "/actions/{id}/updates": {
            "get": _operation(
                "listActionUpdates",
                "An action's history, newest first.",
                (200, _ok("A page.", "UpdatePage")),
                (404, 422),
                parameters=[_ID, *schemas.query_parameters(schemas.UPDATES_QUERY)],
            )
        },
    }
    # Imported here: the indicator routes import the views, which import this module.
    from tracker.api import indicators

    paths.update(indicators.openapi_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tracker API",
            "version": "1",
            "description": (
                "Recommendations, the offices' actions on them, and the offices' performance "
                "indicators with their quarterly values. Authenticate with a personal "
                "API token from your profile page: `Authorization: Bearer <token>`. You see and "
                "change what you would on the site, under the same rules. Errors are "
                "application/problem+json (RFC 9457)."
            ),
        },
        "servers": [{"url": server, "description": "This tracker."}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal API token (profile page, or `flask tracker create-token`).",
                }
            },
            "schemas": {
                "Me": schemas.ME_SCHEMA,
                "Office": schemas.OFFICE_SCHEMA,
                "OfficeList": {
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"$ref": _REF + "Office"}}},
                    "required": ["items"],
                    "additionalProperties": False,
                },
                "Recommendation": schemas.RECOMMENDATION_SCHEMA,
                "RecommendationPage": schemas.page_schema(
                    {"$ref": _REF + "Recommendation"}, "A page of recommendations."
                ),
                "Action": schemas.ACTION_SCHEMA,
                "ActionPage": schemas.page_schema({"$ref": _REF + "Action"}, "A page of actions."),
                "Extension": schemas.EXTENSION_SCHEMA,
                "ExtensionList": {
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"$ref": _REF + "Extension"}}},
                    "required": ["items"],
                    "additionalProperties": False,
                },
                "Update": schemas.UPDATE_SCHEMA,
                "UpdatePage": schemas.page_schema({"$ref": _REF + "Update"}, "A page of history entries."),
                "Problem": schemas.PROBLEM_SCHEMA,
                **indicators.openapi_schemas(),
            },
        },
    }
