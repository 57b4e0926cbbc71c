"""tracker: follows recommendations through offices' action plans until each action is verified."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_request_context, render_template, request, session
from flask_babel import lazy_gettext
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from werkzeug.middleware.proxy_fix import ProxyFix

from config import ConfigError, config_from_environment
from tracker.extensions import babel, csrf, db, limiter, login_manager, migrate
from tracker.ops import register_ops
from tracker.page_helpers import register_page_helpers
from tracker.security import register_security

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: configuration, extensions, blueprints, error pages, commands."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), instance_path=str(ROOT / "instance"))
    config_class = config_from_environment()
    app.config.from_object(config_class)
    if test_config:
        app.config.update(test_config)
    config_class.setup(app.config, app.instance_path)
    config_class.check(app.config)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config["SQLALCHEMY_DATABASE_URI"])

    if app.config["TRACKER_PROXIES"]:
        n = app.config["TRACKER_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]

    register_extensions(app)
    register_security(app)  # before the blueprints: their <int:…> rules use its bounded converter
    register_ops(app)  # logging, request ids and logs, metrics, /healthz /readyz /metrics
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_page_helpers(app)
    register_commands(app)
    return app


def database_url(raw: str) -> str:
    """Validate DATABASE_URL and pick the installed PostgreSQL driver (psycopg 3)."""
    try:
        url: URL = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {raw!r}") from None
    if url.drivername in {"postgres", "postgresql"}:
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"DATABASE_URL names an unsupported database {url.drivername!r}; "
            "use sqlite:///path or postgresql://user@host/dbname"
        ) from None
    return url.render_as_string(hide_password=False)


def _make_sqlite_folder(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
    # At the first connection, not in the factory: creating the app touches no files.
    if dialect.name == "sqlite" and cargs and cargs[0] not in ("", ":memory:"):
        Path(cargs[0]).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite leaves foreign keys off by default; WAL lets readers work while the scheduler writes.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def register_extensions(app: Flask) -> None:
    """Bind the unbound extensions to this application."""
    db.init_app(app)
    with app.app_context():
        event.listen(db.engine, "do_connect", _make_sqlite_folder)
        event.listen(db.engine, "connect", _sqlite_pragmas)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)

    from tracker.auth.services import load_user

    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    login_manager.login_message = lazy_gettext("Please sign in to see this page.")


def select_locale() -> str | None:
    """The page language: the user's setting, else the browser's preference, else English."""
    languages = list(current_app.config["TRACKER_LANGUAGES"])
    if not has_request_context():  # CLI and jobs choose with flask_babel.force_locale
        return languages[0]
    if current_user.is_authenticated and current_user.language in languages:
        return current_user.language
    if session.get("language") in languages:  # chosen with the switcher before signing in
        return session["language"]
    return request.accept_languages.best_match(languages) or languages[0]


def select_timezone() -> str | None:
    """The zone to show times in: the user's override, else their office's, else UTC."""
    if has_request_context() and current_user.is_authenticated:
        return current_user.zone.key
    return None


def register_blueprints(app: Flask) -> None:
    """Mount each feature's blueprint."""
    from tracker.actions.views import bp as actions_bp
    from tracker.admin.views import bp as admin_bp
    from tracker.api.views import bp as api_bp
    from tracker.auth.sso_views import bp as sso_bp
    from tracker.auth.views import bp as auth_bp
    from tracker.dashboard.views import bp as dashboard_bp
    from tracker.indicators.views import bp as indicators_bp
    from tracker.jobs.views import bp as jobs_bp
    from tracker.notifications.admin_views import bp as outbox_bp
    from tracker.notifications.views import bp as notifications_bp
    from tracker.offices.views import bp as offices_bp
    from tracker.profile.views import bp as profile_bp
    from tracker.recommendations.views import bp as recommendations_bp
    from tracker.transfer.views import bp as transfer_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(sso_bp)  # checks the TRACKER_SSO_* settings
    app.register_blueprint(actions_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(recommendations_bp)
    app.register_blueprint(notifications_bp)
    app.register_blueprint(outbox_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(offices_bp)
    app.register_blueprint(transfer_bp)
    app.register_blueprint(profile_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(indicators_bp)
    # Token authentication only, never cookies: a cross-site form cannot act through the API.
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp)


def register_errorhandlers(app: Flask) -> None:
    """Render 400/403/404/500 with the site's layout."""

    from flask import request
    from werkzeug.exceptions import HTTPException, InternalServerError

    from tracker.api import views as api_views

    def render_error(error: Any) -> Any:
        code = getattr(error, "code", 500) or 500
        if code == 500:
            db.session.rollback()
        if request.path == api_views.bp.url_prefix or request.path.startswith(f"{api_views.bp.url_prefix}/"):
            # An API path no API route matched (e.g. one with a line break, which the catch-all
            # route's pattern does not take) still answers as the API does: a problem document.
            return api_views.http_error(error if isinstance(error, HTTPException) else InternalServerError())
        return render_template("errors/error.html", code=code, error=error), code

    for code in (400, 403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, render_error)


def register_template_helpers(app: Flask) -> None:
    """Expose the permission check and enums to templates."""
    from tracker import formats, labels, permissions
    from tracker.indicators import queries as indicator_queries
    from tracker.models import Role, Status

    # Replaces Flask-Babel's filter: moments are shown to the minute, without seconds.
    app.jinja_env.filters["datetimeformat"] = formats.format_datetime

    app.jinja_env.globals.update(
        Perm=permissions.Perm,
        Role=Role,
        Status=Status,
        role_label=labels.role_label,
        status_label=labels.status_label,
        priority_label=labels.priority_label,
        response_label=labels.response_label,
        kind_label=labels.kind_label,
        event_label=labels.event_label,
        extension_state_label=labels.extension_state_label,
        unit_label=labels.unit_label,
        unit_hint=labels.unit_hint,
        direction_label=labels.direction_label,
        measurement_state_label=labels.measurement_state_label,
        measurement_state_mark=labels.measurement_state_mark,
        measurement_event_label=labels.measurement_event_label,
        indicator_value=indicator_queries.format_value,
        language_choices=labels.language_choices,
        current_locale_code=labels.locale_code,
        current_locale_rtl=labels.locale_is_rtl,
    )

    @app.context_processor
    def inject() -> dict[str, Any]:
        return {
            "can": lambda perm, obj=None: permissions.can(current_user, perm, obj),
            "relay_trouble": _relay_trouble(),
        }


#: Blueprints whose pages are the admin pages (the relay banner shows there).
ADMIN_BLUEPRINTS = frozenset({"admin", "outbox"})


def _relay_trouble() -> Any:
    """The failing relay's health row on admin pages for admins (one query there), else None."""
    from tracker import permissions
    from tracker.notifications.health import relay_trouble

    if request.blueprint not in ADMIN_BLUEPRINTS or not permissions.can(
        current_user, permissions.Perm.MANAGE_OUTBOX
    ):
        return None
    return relay_trouble(datetime.now(UTC))


def register_commands(app: Flask) -> None:
    """Register the `flask tracker …` command group."""
    from tracker.cli import tracker_cli

    app.cli.add_command(tracker_cli)
