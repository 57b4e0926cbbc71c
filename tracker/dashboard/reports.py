"""The figures of the printable reports: the programme's and each office's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tracker.dashboard import services as dashboard
from tracker.models import DONE_STATUSES, UNCOUNTED_STATUSES, Office, User, completion_rate

#: Overdue actions listed in a report (a meeting reads the oldest first; the rest are counted).
REPORT_OVERDUE_LIMIT = 500


@dataclass(frozen=True)
class Report:
    """What a printable report shows: the summary, progress per office, the matrix, overdue items."""

    office: Office | None
    figures: dashboard.Dashboard

    @property
    def totals(self) -> dashboard.Totals:
        """Item counts by status, overdue and due soon."""
        return self.figures.totals

    @property
    def offices(self) -> list[dashboard.OfficeProgress]:
        """Progress per office."""
        return self.figures.offices

    @property
    def matrix(self) -> dashboard.Matrix:
        """Recommendations × offices."""
        return self.figures.matrix

    @property
    def overdue_items(self) -> list[dashboard.OverdueItem]:
        """The most overdue items, oldest deadline first (at most REPORT_OVERDUE_LIMIT)."""
        return self.figures.overdue_items

    @property
    def done(self) -> int:
        """Completed or verified items."""
        return sum(self.totals.by_status[s] for s in DONE_STATUSES)

    @property
    def counted(self) -> int:
        """Items neither cancelled nor proposed (UNCOUNTED_STATUSES): the base of the completion rate."""
        return self.totals.total - sum(self.totals.by_status[s] for s in UNCOUNTED_STATUSES)

    @property
    def completion_rate(self) -> float | None:
        """Share (0–1) of the counted items that are completed or verified."""
        return completion_rate(self.done, self.counted)


def build_report(
    user: User, now: datetime, filters: dashboard.Filters, office: Office | None = None
) -> Report:
    """The report's figures for ``user``: the dashboard's, cached the same way, with a longer overdue list.

    ``office`` (an office report) must be the one of ``filters.office_code``.
    """
    return Report(
        office=office, figures=dashboard.build_dashboard(user, now, filters, limit=REPORT_OVERDUE_LIMIT)
    )
