"""Indicators: measured results that each office reports per quarter, validated by reviewers.

An :class:`Indicator` says what is measured (unit, direction, definition). Each office has at most
one :class:`IndicatorTarget` per indicator: where it started (baseline) and where it means to get
(target). A :class:`Measurement` is one office's value for one quarter (``2026Q3``); it is
``reported`` by the office, then ``validated`` or ``sent_back`` by a reviewer. Every change to a
measurement writes a :class:`MeasurementChange` in the same transaction; history is never edited.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tracker.extensions import db
from tracker.models import Office, Recommendation, StoredFile, User, UTCDateTime, _in, utcnow, watch_data


class Unit(enum.StrEnum):
    """What an indicator's values count; each unit has its bounds (see services.check_value)."""

    PERCENT = "percent"
    NUMBER = "number"
    DAYS = "days"
    MONTHS = "months"
    #: 1 for yes, 0 for no.
    YES_NO = "yes_no"


class Direction(enum.StrEnum):
    """Whether a higher or a lower value is better."""

    HIGHER = "higher"
    LOWER = "lower"


class ReportingPeriod(enum.StrEnum):
    """How often offices report; quarterly for now (a column, so that the rule can grow)."""

    QUARTERLY = "quarterly"


class MeasurementState(enum.StrEnum):
    """Where a reported value stands."""

    REPORTED = "reported"  # entered by the office, awaiting a reviewer
    VALIDATED = "validated"  # accepted by a reviewer: visible to every signed-in user
    SENT_BACK = "sent_back"  # a reviewer asked the office to correct it (with a note)


class MeasurementEvent(enum.StrEnum):
    """What a history row of a measurement records."""

    REPORTED = "reported"
    CORRECTED = "corrected"  # a new value or note for a measurement already there
    VALIDATED = "validated"
    SENT_BACK = "sent_back"
    IMPORTED = "imported"


#: SQL for "a quarter written as YYYYQn" (``2026Q3``): such strings sort in time order.
_PERIOD_SQL = "length({0}) = 6 AND substr({0}, 5, 1) = 'Q' AND substr({0}, 6, 1) IN ('1', '2', '3', '4')"


class Indicator(db.Model):
    """A measured result that offices report each quarter, e.g. the share of applications filed online."""

    __tablename__ = "indicator"
    __table_args__ = (
        sa.CheckConstraint("code = upper(code)", name="code_upper"),
        sa.CheckConstraint(_in("unit", Unit), name="unit_known"),
        sa.CheckConstraint(_in("direction", Direction), name="direction_known"),
        sa.CheckConstraint(_in("period", ReportingPeriod), name="period_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Short stable reference, e.g. ``IND-ONLINE``; upper case.
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: How the value is measured: numerator, denominator, source, what counts.
    definition: Mapped[str] = mapped_column(sa.Text, default="")
    unit: Mapped[str] = mapped_column(sa.String(10))
    direction: Mapped[str] = mapped_column(sa.String(10), default=Direction.HIGHER.value)
    period: Mapped[str] = mapped_column(sa.String(10), default=ReportingPeriod.QUARTERLY.value)
    #: The recommendation whose effect this indicator measures, if any.
    recommendation_id: Mapped[int | None] = mapped_column(sa.ForeignKey("recommendation.id"), index=True)
    #: Set when archived: no longer reported or reminded, its values kept and shown.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    recommendation: Mapped[Recommendation | None] = relationship()
    targets: Mapped[list[IndicatorTarget]] = relationship(back_populates="indicator")

    def __repr__(self) -> str:
        return f"<Indicator {self.code}>"


class IndicatorTarget(db.Model):
    """One office's baseline and target for one indicator (either may be unset)."""

    __tablename__ = "indicator_target"
    __table_args__ = (
        sa.UniqueConstraint("indicator_id", "office_id"),
        sa.CheckConstraint(
            "baseline_period IS NULL OR (" + _PERIOD_SQL.format("baseline_period") + ")",
            name="baseline_period_quarter",
        ),
        sa.CheckConstraint(
            "target_period IS NULL OR (" + _PERIOD_SQL.format("target_period") + ")",
            name="target_period_quarter",
        ),
        sa.CheckConstraint("baseline_value IS NULL OR baseline_period IS NOT NULL", name="baseline_dated"),
        sa.CheckConstraint("target_value IS NULL OR target_period IS NOT NULL", name="target_dated"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(sa.ForeignKey("indicator.id"))
    office_id: Mapped[int] = mapped_column(sa.ForeignKey("office.id"), index=True)
    baseline_value: Mapped[float | None] = mapped_column(sa.Float)
    #: The quarter the baseline was measured in, e.g. ``2024Q4``.
    baseline_period: Mapped[str | None] = mapped_column(sa.String(6))
    target_value: Mapped[float | None] = mapped_column(sa.Float)
    #: The quarter by which the target is to be reached.
    target_period: Mapped[str | None] = mapped_column(sa.String(6))
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    indicator: Mapped[Indicator] = relationship(back_populates="targets")
    office: Mapped[Office] = relationship()
    updated_by: Mapped[User | None] = relationship()


class Measurement(db.Model):
    """One office's value of one indicator for one quarter, with its review state."""

    __tablename__ = "measurement"
    __table_args__ = (
        # One value per office, indicator and quarter: a second report corrects the first.
        sa.UniqueConstraint("indicator_id", "office_id", "period"),
        sa.CheckConstraint(_PERIOD_SQL.format("period"), name="period_quarter"),
        sa.CheckConstraint(_in("state", MeasurementState), name="state_known"),
        # The comparison page and the API read an indicator's values by quarter.
        sa.Index(None, "indicator_id", "period"),
        # An office's page and its reporting form read its values by quarter.
        sa.Index(None, "office_id", "period"),
        # The review queue: values awaiting validation, oldest first.
        sa.Index(None, "state", "reported_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    indicator_id: Mapped[int] = mapped_column(sa.ForeignKey("indicator.id"))
    office_id: Mapped[int] = mapped_column(sa.ForeignKey("office.id"))
    #: The quarter measured, written ``2026Q3``.
    period: Mapped[str] = mapped_column(sa.String(6))
    value: Mapped[float] = mapped_column(sa.Float)
    note: Mapped[str | None] = mapped_column(sa.Text)
    #: A link to where the value can be checked (a report, a statistics page).
    evidence_url: Mapped[str | None] = mapped_column(sa.String(2000))
    #: An uploaded evidence file, kept in the database like action evidence.
    evidence_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stored_file.id"), unique=True)
    evidence_filename: Mapped[str | None] = mapped_column(sa.String(255))
    evidence_content_type: Mapped[str | None] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(10), default=MeasurementState.REPORTED.value)
    reported_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    #: When the current value was last reported (or corrected): the review queue waits from here.
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The reviewer's note when sending the value back (kept until the next review).
    review_note: Mapped[str | None] = mapped_column(sa.Text)
    #: Raised by every change: a form saved over a newer version is refused, not silently lost.
    version: Mapped[int] = mapped_column(default=1)

    indicator: Mapped[Indicator] = relationship()
    office: Mapped[Office] = relationship()
    evidence_file: Mapped[StoredFile | None] = relationship()
    reported_by: Mapped[User | None] = relationship(foreign_keys=[reported_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    changes: Mapped[list[MeasurementChange]] = relationship(
        back_populates="measurement", order_by="MeasurementChange.id"
    )

    def __repr__(self) -> str:
        return f"<Measurement {self.indicator_id} {self.office_id} {self.period} {self.state}>"


class MeasurementChange(db.Model):
    """One entry of a measurement's history, written with the change it records and never edited."""

    __tablename__ = "measurement_change"
    __table_args__ = (
        sa.CheckConstraint(_in("event", MeasurementEvent), name="event_known"),
        sa.Index(None, "measurement_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    measurement_id: Mapped[int] = mapped_column(sa.ForeignKey("measurement.id"))
    #: None for changes made by the system.
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(sa.String(20))
    old_value: Mapped[float | None] = mapped_column(sa.Float)
    new_value: Mapped[float | None] = mapped_column(sa.Float)
    old_state: Mapped[str | None] = mapped_column(sa.String(10))
    new_state: Mapped[str | None] = mapped_column(sa.String(10))
    #: The reporter's note, or the reviewer's when sending back.
    note: Mapped[str | None] = mapped_column(sa.Text)

    measurement: Mapped[Measurement] = relationship(back_populates="changes")
    author: Mapped[User | None] = relationship()


@event.listens_for(MeasurementChange, "before_update")
def _history_is_append_only(mapper: Any, connection: Any, target: MeasurementChange) -> None:
    raise ValueError("MeasurementChange rows are history and are never edited")


# The dashboard's cached figures include the indicator table: its writes raise the data version.
watch_data(Indicator, IndicatorTarget, Measurement)
