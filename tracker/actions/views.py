"""The home page (the actions a user may see) and the action item page."""

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, render_template, request
from flask_login import current_user, login_required

from tracker.actions import services
from tracker.models import Status

bp = Blueprint("actions", __name__)


@bp.route("/")
@login_required
def home() -> str:
    """List the action items the signed-in user may see, filtered and paginated."""
    now = datetime.now(UTC)
    status = request.args.get("status") or None
    if status not in {s.value for s in Status}:
        status = None
    office = request.args.get("office") or None
    overdue_only = request.args.get("overdue") == "1"
    recommendation = request.args.get("recommendation") or None
    page = services.list_actions(
        current_user,
        now,
        page=request.args.get("page", 1, type=int),
        per_page=current_app.config["TRACKER_PAGE_SIZE"],
        office_code=office,
        status=status,
        overdue_only=overdue_only,
        recommendation_code=recommendation,
    )
    return render_template(
        "actions/home.html",
        page=page,
        now=now,
        offices=services.visible_offices(current_user),
        filters={
            "office": office or "",
            "status": status or "",
            "overdue": overdue_only,
            "recommendation": recommendation or "",
        },
    )


@bp.route("/actions/<int:action_id>")
@login_required
def detail(action_id: int) -> str:
    """An action item with its history; 404 when it is missing or not the user's to see."""
    item = services.get_action(current_user, action_id)
    if item is None:
        abort(404)
    return render_template("actions/detail.html", item=item, now=datetime.now(UTC))
