"""The dashboard page and the printable reports: figures for the offices the user may see, narrowed by
filters in the URL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from tracker.dashboard import charts, fragments, history, reports, services
from tracker.models import Office
from tracker.offices.services import get_office
from tracker.permissions import Perm, office_scope, require

bp = Blueprint("dashboard", __name__)


def parse_filters(args: Mapping[str, str], choices: services.Choices) -> tuple[services.Filters, bool]:
    """The filters from the query string, keeping only values the form offers; True if any was dropped.

    Checking against the offered values keeps junk (huge numbers, NUL bytes) away from the database,
    and an office outside the user's scope is simply not among the choices.
    """
    raw_source = (args.get("source") or "").strip()
    raw_theme = args.get("theme") or ""
    raw_office = (args.get("office") or "").strip().upper()
    source = {str(s.id): s.id for s in choices.sources}.get(raw_source)
    theme = raw_theme if raw_theme in choices.themes else None
    office = raw_office if raw_office in {o.code for o in choices.offices} else None
    dropped = bool(
        (raw_source and source is None) or (raw_theme and theme is None) or (raw_office and office is None)
    )
    return services.Filters(source_id=source, theme=theme, office_code=office), dropped


@bp.route("/dashboard")
@login_required
def index() -> str:
    """Totals, progress per office and over time, the matrix, overdue items, completions per quarter."""
    require(current_user, Perm.VIEW_DASHBOARD)
    now = datetime.now(UTC)
    choices = services.filter_choices(current_user)
    filters, dropped = parse_filters(request.args, choices)
    data = services.build_dashboard(current_user, now, filters)
    rates = history.for_dashboard(data, now.date())
    links = {"source": filters.source_id, "theme": filters.theme}
    return render_template(
        "dashboard/index.html",
        data=data,
        matrix_html=fragments.matrix_table(data, "matrix-caption", links=links, describedby="matrix-help"),
        overdue_html=fragments.overdue_rows(data),
        indicators_html=fragments.indicator_table(data),
        choices=choices,
        filters=filters,
        dropped=dropped,
        now=now,
        office_chart=charts.office_progress_chart(data.offices),
        quarter_chart=charts.completion_chart(data.quarters),
        quarter_label=charts.quarter_label,
        rates=rates,
        rate_chart=charts.rate_chart("chart-rates", rates),
        charts=charts,
        due_soon_days=services.DUE_SOON_DAYS,
    )


# --- reports ---------------------------------------------------------------------------------


@bp.route("/reports/programme")
@login_required
def programme_report() -> str:
    """The printable report of the whole programme (those who see every office; others: 403)."""
    require(current_user, Perm.VIEW_DASHBOARD)
    if office_scope(current_user) is not None:
        abort(403)
    choices = services.filter_choices(current_user)
    filters, dropped = parse_filters(request.args, choices)
    return _report_page(choices, filters, dropped)


@bp.route("/reports/offices/<code>")
@login_required
def office_report(code: str) -> str:
    """The printable report of one office (404 for an office the user may not see)."""
    office = get_office(current_user, code)
    choices = services.filter_choices(current_user)
    chosen, dropped = parse_filters(request.args, choices)
    filters = services.Filters(source_id=chosen.source_id, theme=chosen.theme, office_code=office.code)
    return _report_page(choices, filters, dropped, office)


def _report_page(
    choices: services.Choices,
    filters: services.Filters,
    dropped: bool,
    office: Office | None = None,
) -> str:
    now = datetime.now(UTC)
    report = reports.build_report(current_user, now, filters, office)
    return render_template(
        "dashboard/report.html",
        report=report,
        matrix_html=fragments.matrix_table(report.figures, "table-3", table_class="matrix report-matrix"),
        overdue_html=fragments.overdue_rows(report.figures, report=True),
        filters=filters,
        choices=choices,
        dropped=dropped,
        now=now,
        due_soon_days=services.DUE_SOON_DAYS,
    )
