"""Administration pages: the list of users."""

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template, request
from flask_login import current_user, login_required
from sqlalchemy.orm import joinedload

from tracker.extensions import db
from tracker.models import User
from tracker.permissions import Perm, require

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/users")
@login_required
def users() -> str:
    """Every user with role, office and state, paginated (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    query = sa.select(User).options(joinedload(User.office)).order_by(User.email)
    page = db.paginate(
        query,
        page=request.args.get("page", 1, type=int),
        per_page=current_app.config["TRACKER_PAGE_SIZE"],
        error_out=False,
    )
    return render_template("admin/users.html", page=page)
