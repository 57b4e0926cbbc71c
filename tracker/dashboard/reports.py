"""The figures of the printable reports: the programme's and each office's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tracker.actions.queries import due_soon_clause, overdue_clause
from tracker.dashboard import services as dashboard
from tracker.models import DONE_STATUSES, ActionItem, Office, Status, User, completion_rate

#: Overdue actions listed in a report (a meeting reads the oldest first; the rest are counted).
REPORT_OVERDUE_LIMIT = 500


@dataclass(frozen=True)
class Report:
    """What a printable report shows: the summary, progress per office, the matrix, overdue items."""

    office: Office | None
    totals: dashboard.Totals
    offices: list[dashboard.OfficeProgress]
    matrix: dashboard.Matrix
    overdue_items: list[ActionItem]

    @property
    def done(self) -> int:
        """Completed or verified items."""
        return sum(self.totals.by_status[s] for s in DONE_STATUSES)

    @property
    def counted(self) -> int:
        """Items that are not cancelled: the base of the completion rate."""
        return self.totals.total - self.totals.by_status[Status.CANCELLED.value]

    @property
    def completion_rate(self) -> float | None:
        """Share (0–1) of the items not cancelled that are completed or verified."""
        return completion_rate(self.done, self.counted)


def build_report(
    user: User, now: datetime, filters: dashboard.Filters, offices: list[Office], office: Office | None = None
) -> Report:
    """The report's figures for ``user`` (the dashboard's queries: a fixed number of statements)."""
    overdue = overdue_clause(now)
    progress = dashboard.office_progress(user, filters, offices, overdue)
    return Report(
        office=office,
        totals=dashboard.totals(user, filters, overdue, due_soon_clause(now, dashboard.DUE_SOON_DAYS)),
        offices=progress,
        matrix=dashboard.matrix(user, filters, progress, overdue),
        overdue_items=dashboard.overdue_items(user, filters, overdue, limit=REPORT_OVERDUE_LIMIT),
    )
