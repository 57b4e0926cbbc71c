"""Administration pages: users (list, create, edit, deactivate, reactivate, reset password) and offices."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_required
from flask_sqlalchemy.pagination import Pagination
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from tracker.admin import audit_log, services
from tracker.admin import home as admin_home
from tracker.admin.forms import (
    ConfirmForm,
    OfficeCreateForm,
    OfficeEditForm,
    UserCreateForm,
    UserEditForm,
    language_choices,
    office_choices,
    timezone_choices,
)
from tracker.admin.services import OfficeError, UserError
from tracker.auth import twofactor
from tracker.extensions import db
from tracker.forms import show_refusal
from tracker.models import Office, Role, User
from tracker.notifications.account import send_invitation
from tracker.params import page_arg
from tracker.permissions import Perm, require
from tracker.profile import absences
from tracker.profile.forms import AbsenceForm
from tracker.profile.views import record_absence
from tracker.transfer.export import csv_stream

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _not_saved(form: FlaskForm) -> None:
    """Say so when a submitted form comes back with errors (the details are next to the fields)."""
    if form.is_submitted():
        flash(_("Nothing was saved: see the messages in the form."), "error")


# --- home ------------------------------------------------------------------------------------


@bp.route("")
@login_required
def home() -> str:
    """The admin home: dormant accounts, offices without a manager, the outbox's health (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    now = datetime.now(UTC)
    return render_template(
        "admin/home.html",
        data=admin_home.admin_home(now),
        now=now,
        dormant_days=admin_home.DORMANT_AFTER.days,
    )


# --- users -----------------------------------------------------------------------------------


@bp.route("/users")
@login_required
def users() -> str:
    """Every user with role, office and state, filtered by the URL and paginated (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    filters = {
        "q": request.args.get("q", "").strip(),
        "role": request.args.get("role", "") if request.args.get("role") in {r.value for r in Role} else "",
        "office": request.args.get("office", "").strip().upper(),
        "state": request.args.get("state", "") if request.args.get("state") in services.USER_STATES else "",
    }
    page = services.list_users(
        current_user,
        page=request.args.get("page", 1, type=int),
        per_page=current_app.config["TRACKER_PAGE_SIZE"],
        q=filters["q"] or None,
        role=filters["role"] or None,
        office_code=filters["office"] or None,
        state=filters["state"] or None,
    )
    return render_template(
        "admin/users.html",
        page=page,
        filters=filters,
        offices=services.all_offices(),
        no_office=services.NO_OFFICE,
    )


@bp.route("/users/new", methods=["GET", "POST"])
@login_required
def new_user() -> Response | str:
    """Create a user who is invited by mail or given an initial password (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    form = UserCreateForm(role=Role.FOCAL_POINT.value, language="", timezone="")  # the office's
    form.office.choices = office_choices(
        [o for o in services.all_offices() if o.active], _("No office (programme-wide)")
    )
    form.language.choices = language_choices(_("Default (the office’s language)"))
    form.timezone.choices = timezone_choices(_("Same as the office (UTC without an office)"))
    if form.validate_on_submit():
        try:
            user = services.create_user(
                form.email.data,
                form.role.data,
                name=form.name.data,
                office_code=form.office.data or None,
                password=form.password.data or None,
                language=form.language.data or None,
                timezone=form.timezone.data or None,
                actor=current_user,
                now=datetime.now(UTC),
            )
            if form.invite.data:
                send_invitation(user, current_user, datetime.now(UTC))
            db.session.commit()
        except UserError as exc:
            show_refusal(form, exc)
        else:
            if form.invite.data:
                flash(
                    _(
                        "%(name)s is invited: a link to choose a password goes to %(email)s.",
                        name=user.name,
                        email=user.email,
                    ),
                    "success",
                )
            else:
                flash(_("%(name)s (%(email)s) can now sign in.", name=user.name, email=user.email), "success")
            return redirect(url_for("admin.edit_user", user_id=user.id))
    _not_saved(form)
    return render_template("admin/user_form.html", form=form, user=None)


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
@login_required
def edit_user(user_id: int) -> Response | str:
    """Change a user's name, role, office, language and time zone (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    form = UserEditForm(
        name=user.name,
        role=user.role,
        office=user.office.code if user.office else "",
        language=user.language or "",
        timezone=user.timezone or "",
    )
    form.office.choices = office_choices(
        [o for o in services.all_offices() if o.active or o.id == user.office_id],
        _("No office (programme-wide)"),
    )
    form.language.choices = language_choices(_("Default (the office’s language)"))
    form.timezone.choices = timezone_choices(_("Same as the office (UTC without an office)"))
    if form.validate_on_submit():
        try:
            services.update_user(
                current_user,
                user,
                name=form.name.data,
                role=form.role.data,
                office_code=form.office.data or None,
                language=form.language.data or None,
                timezone=form.timezone.data or None,
            )
            db.session.commit()
        except UserError as exc:
            show_refusal(form, exc)
        else:
            flash(_("The changes to %(name)s are saved.", name=user.name), "success")
            return redirect(url_for("admin.edit_user", user_id=user.id))
    _not_saved(form)
    return render_template(
        "admin/user_form.html",
        form=form,
        user=user,
        open_sessions=services.open_session_count(user, _now()),
        second_factor=twofactor.status(user),
    )


def _confirm_page(
    title: str, text: list[str], button: str, back: str, form: ConfirmForm | None = None
) -> str:
    """The confirmation asked before a change to an account (one button, and Cancel back)."""
    return render_template(
        "admin/confirm.html", form=form or ConfirmForm(), title=title, text=text, button=button, cancel=back
    )


def _apply(change: Callable[[], object], done: str, unchanged: str | None = None) -> bool:
    """Run a confirmed change, commit it and say how it went; a refused one is rolled back and its
    reason shown. ``unchanged`` is said instead of ``done`` when the change returns False."""
    try:
        changed = change()
        db.session.commit()
    except (UserError, twofactor.TwoFactorError) as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return False
    if changed is False and unchanged is not None:
        flash(unchanged, "info")
    else:
        flash(done, "success")
    return True


@bp.route("/users/<int:user_id>/deactivate", methods=["GET", "POST"])
@login_required
def deactivate_user(user_id: int) -> Response | str:
    """Ask, then stop a user from signing in and end their sessions (admins only, not oneself)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    back = url_for("admin.edit_user", user_id=user.id)
    if request.method == "GET":
        if user.id == current_user.id:
            flash(_("You cannot deactivate your own account."), "error")
            return redirect(back)
        if not user.active:
            flash(_("%(name)s is already deactivated.", name=user.name), "info")
            return redirect(back)
        return _confirm_page(
            title=_("Deactivate %(name)s?", name=user.name),
            text=[
                _(
                    "%(name)s (%(email)s) will no longer be able to sign in, and every session they "
                    "have open ends now.",
                    name=user.name,
                    email=user.email,
                ),
                _("Their actions and history stay as they are. You can reactivate the account later."),
            ],
            button=_("Deactivate %(name)s", name=user.name),
            back=back,
        )
    _apply(
        lambda: services.deactivate_user(current_user, user),
        _("%(name)s is deactivated and signed out everywhere.", name=user.name),
        _("%(name)s is already deactivated.", name=user.name),
    )
    return redirect(back)


@bp.route("/users/<int:user_id>/reactivate", methods=["GET", "POST"])
@login_required
def reactivate_user(user_id: int) -> Response | str:
    """Ask, then let a deactivated user sign in again (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    back = url_for("admin.edit_user", user_id=user.id)
    if request.method == "GET":
        if user.active:
            flash(_("%(name)s is already active.", name=user.name), "info")
            return redirect(back)
        return _confirm_page(
            title=_("Reactivate %(name)s?", name=user.name),
            text=[
                _(
                    "%(name)s (%(email)s) will be able to sign in again with their password.",
                    name=user.name,
                    email=user.email,
                )
            ],
            button=_("Reactivate %(name)s", name=user.name),
            back=back,
        )
    _apply(
        lambda: services.reactivate_user(current_user, user),
        _("%(name)s is active again and can sign in.", name=user.name),
        _("%(name)s is already active.", name=user.name),
    )
    return redirect(back)


@bp.route("/users/<int:user_id>/reset-password", methods=["GET", "POST"])
@login_required
def reset_password(user_id: int) -> Response | str:
    """Ask, then give a user a temporary password shown once on the response page (admins only)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    back = url_for("admin.edit_user", user_id=user.id)
    if user.id == current_user.id:
        flash(_("Change your own password on the Password page."), "error")
        return redirect(back)
    if request.method == "GET":
        return _confirm_page(
            title=_("Reset the password of %(name)s?", name=user.name),
            text=[
                _(
                    "A new temporary password will be made and shown to you once. The current password "
                    "of %(name)s stops working and every session they have open ends.",
                    name=user.name,
                )
            ],
            button=_("Reset the password of %(name)s", name=user.name),
            back=back,
        )
    temporary: list[str] = []
    if not _apply(
        lambda: temporary.append(services.reset_password(current_user, user)),
        _("The password of %(name)s has been reset.", name=user.name),
    ):
        return redirect(back)
    response = make_response(render_template("admin/password_reset.html", user=user, temporary=temporary[0]))
    response.headers["Cache-Control"] = "no-store"  # the password must not stay in any cache
    return response


@bp.route("/users/<int:user_id>/end-sessions", methods=["GET", "POST"])
@login_required
def end_sessions(user_id: int) -> Response | str:
    """Ask, then sign a user out everywhere: every session they have open ends (admins only, not oneself)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    back = url_for("admin.edit_user", user_id=user.id)
    if user.id == current_user.id:
        flash(_("End your own sessions on your profile page."), "error")
        return redirect(back)
    if request.method == "GET":
        count = services.open_session_count(user, _now())
        if not count:
            flash(_("%(name)s has no open session.", name=user.name), "info")
            return redirect(back)
        return _confirm_page(
            title=_("End every session of %(name)s?", name=user.name),
            text=[
                ngettext(
                    "%(name)s has %(num)d open session. It ends now: every browser signed in as "
                    "%(name)s is signed out, “Keep me signed in” included.",
                    "%(name)s has %(num)d open sessions. They end now: every browser signed in as "
                    "%(name)s is signed out, “Keep me signed in” included.",
                    count,
                    name=user.name,
                ),
                _("Their password stays as it is: they can sign in again."),
            ],
            button=_("End all sessions of %(name)s", name=user.name),
            back=back,
        )
    _apply(
        lambda: services.end_sessions(current_user, user, _now()),
        _("%(name)s is signed out everywhere.", name=user.name),
    )
    return redirect(back)


@bp.route("/users/<int:user_id>/reset-second-factor", methods=["GET", "POST"])
@login_required
def reset_second_factor(user_id: int) -> Response | str:
    """Ask, then remove a user's second factor and end their sessions (admins only, not oneself)."""
    require(current_user, Perm.MANAGE_USERS)
    user = db.get_or_404(User, user_id)
    back = url_for("admin.edit_user", user_id=user.id)
    if user.id == current_user.id:
        flash(_("Manage your own second factor on your profile page."), "error")
        return redirect(back)
    if not user.has_second_factor:
        flash(_("%(name)s does not use a second factor.", name=user.name), "info")
        return redirect(back)
    form = ConfirmForm()
    if not form.validate_on_submit():
        return _confirm_page(
            form=form,
            title=_("Reset the second factor of %(name)s?", name=user.name),
            text=[
                _(
                    "Their authenticator app and recovery codes stop working, and every session they "
                    "have open ends now. They sign in next with their password alone and, if their "
                    "role requires a second factor, set up a new one before they get in.",
                ),
                _(
                    "Do this only once you are sure who asked for it, e.g. after a call to %(name)s.",
                    name=user.name,
                ),
            ],
            button=_("Reset the second factor of %(name)s", name=user.name),
            back=back,
        )
    _apply(
        lambda: twofactor.reset(current_user, user, _now()),
        _("The second factor of %(name)s is reset and they are signed out everywhere.", name=user.name),
    )
    return redirect(back)


# --- absences --------------------------------------------------------------------------------


@bp.route("/users/<int:user_id>/absences", methods=["GET", "POST"])
@login_required
def user_absences(user_id: int) -> ResponseReturnValue:
    """A user's current and future absences, and recording another for them (admins only)."""
    require(current_user, Perm.MANAGE_ABSENCES)
    user = db.get_or_404(User, user_id)
    form = AbsenceForm()
    status = 200
    if record_absence(user, form):
        return redirect(url_for("admin.user_absences", user_id=user.id))
    if form.is_submitted():
        status = 422
        _not_saved(form)
    today = absences.today_of(user, _now())
    return render_template(
        "admin/user_absences.html",
        user=user,
        form=form,
        absences=absences.absences_of(user, today),
        today=today,
    ), status


@bp.route("/users/<int:user_id>/absences/<int:absence_id>/delete", methods=["GET", "POST"])
@login_required
def delete_user_absence(user_id: int, absence_id: int) -> Response | str:
    """Ask, then remove one of a user's absences (admins only)."""
    require(current_user, Perm.MANAGE_ABSENCES)
    absence = absences.get_absence(absence_id)
    if absence is None or absence.user_id != user_id:
        abort(404)
    back = url_for("admin.user_absences", user_id=user_id)
    form = ConfirmForm()
    if form.validate_on_submit():
        absences.delete_absence(current_user, absence, _now())
        db.session.commit()
        flash(_("The absence is removed."), "success")
        return redirect(back)
    return _confirm_page(
        form=form,
        title=_("Remove this absence?"),
        text=[absences.span_text(absence)],
        button=_("Remove absence"),
        back=back,
    )


def _now() -> datetime:
    return datetime.now(UTC)


# --- audit log -------------------------------------------------------------------------------


def _audit_filters() -> tuple[audit_log.AuditFilters, dict[str, str]]:
    return audit_log.read_filters(request.args, current_user.zone)


def _audit_page(page: Pagination | None, errors: dict[str, str]) -> ResponseReturnValue:
    """The audit page: the filter form as asked, then the events (or, with errors, the messages only)."""
    values = {name: request.args.get(name, "") for name in audit_log.FILTER_NAMES}
    return render_template(
        "admin/audit.html",
        page=page,
        errors=errors,
        values=values,
        kinds=audit_log.kind_choices(),
        kind_label=audit_log.kind_label,
        download={name: value for name, value in values.items() if value},
    ), (400 if errors else 200)


@bp.route("/audit")
@login_required
def audit() -> ResponseReturnValue:
    """The security events, newest first, filtered by the URL and paginated (admins only)."""
    require(current_user, Perm.VIEW_AUDIT)
    filters, errors = _audit_filters()
    if errors:
        return _audit_page(None, errors)
    page = audit_log.events_page(filters, page=page_arg(), per_page=current_app.config["TRACKER_PAGE_SIZE"])
    return _audit_page(page, errors)


@bp.route("/audit.csv")
@login_required
def audit_csv() -> ResponseReturnValue:
    """The security events under the page's filters, as CSV streamed row by row (admins only)."""
    require(current_user, Perm.VIEW_AUDIT)
    filters, errors = _audit_filters()
    if errors:
        return _audit_page(None, errors)
    today = _now().astimezone(current_user.zone).date()
    response = current_app.response_class(
        stream_with_context(csv_stream(audit_log.csv_header(), audit_log.csv_rows(filters))),
        mimetype="text/csv",
    )
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{today:%Y%m%d}.csv"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


# --- offices ---------------------------------------------------------------------------------


@bp.route("/offices")
@login_required
def offices() -> str:
    """Every office with its settings and number of users (admins only)."""
    require(current_user, Perm.MANAGE_OFFICES)
    return render_template("admin/offices.html", rows=services.list_offices(current_user))


@bp.route("/offices/new", methods=["GET", "POST"])
@login_required
def new_office() -> Response | str:
    """Create an office (admins only)."""
    require(current_user, Perm.MANAGE_OFFICES)
    form = OfficeCreateForm(language=services.languages()[0], timezone="UTC")
    form.language.choices = language_choices()
    form.timezone.choices = timezone_choices()
    if form.validate_on_submit():
        try:
            office = services.create_office(
                current_user,
                code=form.code.data,
                name=form.name.data,
                country=form.country.data,
                timezone=form.timezone.data,
                language=form.language.data,
                active=form.active.data,
            )
            db.session.commit()
        except OfficeError as exc:
            show_refusal(form, exc)
        else:
            flash(_("The office %(code)s is created.", code=office.code), "success")
            return redirect(url_for("admin.offices"))
    _not_saved(form)
    return render_template("admin/office_form.html", form=form, office=None)


@bp.route("/offices/<int:office_id>/edit", methods=["GET", "POST"])
@login_required
def edit_office(office_id: int) -> Response | str:
    """Change an office's name, country, time zone, language and state; not its code (admins only)."""
    require(current_user, Perm.MANAGE_OFFICES)
    office = db.get_or_404(Office, office_id)
    form = OfficeEditForm(obj=office)
    form.language.choices = language_choices()
    form.timezone.choices = timezone_choices()
    if form.validate_on_submit():
        try:
            services.update_office(
                current_user,
                office,
                name=form.name.data,
                country=form.country.data,
                timezone=form.timezone.data,
                language=form.language.data,
                active=form.active.data,
            )
            db.session.commit()
        except OfficeError as exc:
            show_refusal(form, exc)
        else:
            flash(_("The changes to the office %(code)s are saved.", code=office.code), "success")
            return redirect(url_for("admin.offices"))
    _not_saved(form)
    return render_template("admin/office_form.html", form=form, office=office)
