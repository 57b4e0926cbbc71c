"""The recommendation × office matrix as HTML: cheap to render, and rendered once per version.

The matrix has a cell per (recommendation, office) pair — 1,200 for 100 recommendations and 12
offices — so its texts and links are prepared here, each distinct label translated once, each link
joined from one prefix, and the template only prints them. The rendered table is kept in the cache
under the figures' key and the language, until the data changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlencode

from flask import get_template_attribute, url_for
from flask_babel import get_locale, ngettext
from markupsafe import Markup

from tracker.dashboard import cache as figures_cache
from tracker.dashboard.services import Dashboard, Matrix, RecommendationInfo
from tracker.labels import status_label

#: Characters Werkzeug leaves unescaped in a query string: the links equal url_for's.
_QUERY_SAFE = "!$'()*,/:;?@"


@dataclass(frozen=True)
class CellView:
    """One cell as printed: its key (``R-1/SG``), CSS classes, label and link; no label when empty."""

    key: str
    css: str = ""
    label: Markup | None = None
    href: str | None = None


@dataclass(frozen=True)
class RowView:
    """One recommendation's row of cells, office by office."""

    recommendation: RecommendationInfo
    cells: list[CellView]


def matrix_rows(matrix: Matrix, links: Mapping[str, object] | None) -> list[RowView]:
    """The matrix's rows ready to print; with ``links`` (extra filters), each cell links to its actions."""
    label = _labeller()
    prefix = url_for("actions.home") if links is not None else None
    extra = [(name, value) for name, value in (links or {}).items() if value is not None]
    rows = []
    for rec in matrix.recommendations:
        cells = []
        for office in matrix.offices:
            key = f"{rec.code}/{office.code}"
            cell = matrix.cell(rec.id, office.id)
            if cell is None:
                cells.append(CellView(key=key))
                continue
            worst = cell.worst.value
            href = None
            if prefix is not None:
                query = [("office", office.code), ("recommendation", rec.code), *extra]
                href = f"{prefix}?{urlencode(query, safe=_QUERY_SAFE)}"
            css = f"cell status-{worst}" + (" cell-overdue" if cell.overdue else "")
            cells.append(CellView(key=key, css=css, label=label(cell.count, worst, cell.overdue), href=href))
        rows.append(RowView(recommendation=rec, cells=cells))
    return rows


def _labeller() -> Callable[[int, str, int], Markup]:
    """A cell label maker translating each distinct text once (the matrix repeats a few of them)."""

    @cache
    def actions(count: int) -> str:
        return ngettext("%(num)d action", "%(num)d actions", count)

    @cache
    def status(value: str) -> str:
        return status_label(value)

    @cache
    def overdue(count: int) -> Markup:
        return Markup(' <span class="badge overdue-flag">{}</span>').format(
            ngettext("%(num)d overdue", "%(num)d overdue", count)
        )

    def label(count: int, worst: str, late: int) -> Markup:
        text = Markup('<span class="cell-count">{}</span> <span class="cell-status">{}</span>').format(
            actions(count), status(worst)
        )
        return text + overdue(late) if late else text

    return label


def matrix_table(
    figures: Dashboard,
    caption_id: str,
    table_class: str = "matrix",
    links: Mapping[str, object] | None = None,
    describedby: str | None = None,
) -> Markup:
    """The matrix table of ``figures``, rendered once per figures, language and arguments."""
    link_key = None if links is None else tuple(sorted(links.items(), key=lambda kv: kv[0]))
    key = ("matrix-html", figures.key, str(get_locale()), caption_id, table_class, link_key, describedby)

    def render() -> Markup:
        macro = get_template_attribute("dashboard/_matrix.html", "matrix_table")
        rows = matrix_rows(figures.matrix, links)
        return Markup(
            macro(figures.matrix, rows, caption_id, table_class=table_class, describedby=describedby)
        )

    if figures.key is None:  # figures computed outside the cache: nothing names them
        return render()
    return figures_cache.cached(key, render)


def indicator_table(figures: Dashboard) -> Markup:
    """The office × indicator table, rendered once per figures and language (a cell per office and
    indicator, each value formatted in the reader's locale: too many to format on every request)."""
    key = ("indicators-html", figures.key, str(get_locale()))

    def render() -> Markup:
        macro = get_template_attribute("dashboard/_indicators.html", "indicator_table")
        return Markup(macro(figures.indicators))

    if figures.key is None:
        return render()
    return figures_cache.cached(key, render)


def overdue_rows(figures: Dashboard, report: bool = False) -> Markup:
    """The rows of the overdue list (a report's has a status column), rendered once per figures,
    language and owners' names (names are read per request: a rename shows at once)."""
    names = tuple(item.owner_name for item in figures.overdue_items)
    key = ("overdue-html", figures.key, str(get_locale()), report, names)

    def render() -> Markup:
        macro = get_template_attribute("dashboard/_overdue.html", "overdue_rows")
        return Markup(macro(figures.overdue_items, report=report))

    if figures.key is None:
        return render()
    return figures_cache.cached(key, render)
