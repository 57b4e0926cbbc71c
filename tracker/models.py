"""The domain model: offices, people, recommendations, action items, their history, the outbox.

Datetimes are stored in UTC (columns ending in ``_at``); deadlines are dates in the office's zone.
Rules the database can hold (unique keys, checks, foreign keys) live here, in the schema.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy import event
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from tracker.extensions import db


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (used as a callable column default)."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A UTC timestamp: stored naive on every backend, always returned timezone-aware."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _in(column: str, values: enum.EnumMeta) -> str:
    """SQL for a CHECK that keeps ``column`` within the values of a string enum."""
    listed = ", ".join(f"'{member.value}'" for member in values)  # type: ignore[attr-defined]
    return f"{column} IN ({listed})"


class Role(enum.StrEnum):
    """What a user does in the programme; permissions.py says what each may do."""

    ADMIN = "admin"
    REVIEWER = "reviewer"
    MANAGER = "manager"
    FOCAL_POINT = "focal_point"


class Status(enum.StrEnum):
    """Where an action item stands; the workflow says who may move it where."""

    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    COMPLETED = "completed"  # reported done, awaiting verification
    VERIFIED = "verified"  # closed by a reviewer
    CANCELLED = "cancelled"
    #: Put forward by its office, not yet accepted into the plan by a reviewer: no deadline runs.
    PROPOSED = "proposed"


#: Statuses in which an item does not (or no longer) count as overdue: nobody works against its
#: deadline (the one definition; import it). A proposal is not in the plan yet.
CLOSED_STATUSES = frozenset({Status.PROPOSED, Status.COMPLETED, Status.VERIFIED, Status.CANCELLED})
#: SQL for "the item is open", as tracker/actions/queries.py writes it (the partial index matches it).
OPEN_STATUSES_SQL = "status IN ({})".format(
    ", ".join(f"'{s.value}'" for s in sorted(set(Status) - CLOSED_STATUSES))
)
#: Statuses that count as done for the completion rate: reported completed, or verified.
DONE_STATUSES = (Status.COMPLETED.value, Status.VERIFIED.value)
#: Statuses outside the plan, left out of every rate's denominator: cancelled, or only proposed.
UNCOUNTED_STATUSES = (Status.PROPOSED.value, Status.CANCELLED.value)


def completion_rate(done: int, counted: int) -> float | None:
    """The completion rate (0–1): done items over items not cancelled; None when nothing counts.

    The one definition, used by the dashboard, the printable reports and the digest.
    """
    return done / counted if counted else None


class Priority(enum.StrEnum):
    """How urgent a recommendation is."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ResponseKind(enum.StrEnum):
    """An office's position on a recommendation, kept apart from implementation."""

    ACCEPTED = "accepted"
    PARTIALLY_ACCEPTED = "partially_accepted"
    NOTED = "noted"  # noted, not accepted
    NOT_APPLICABLE = "not_applicable"


class NotificationKind(enum.StrEnum):
    """Every kind of mail that leaves through the outbox."""

    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    ESCALATION = "escalation"
    STALE = "stale"
    DIGEST = "digest"
    ASSIGNMENT = "assignment"
    SENT_BACK = "sent_back"
    VERIFIED = "verified"
    REVIEW_QUEUE = "review_queue"
    INVITATION = "invitation"
    PASSWORD_RESET = "password_reset"
    REOPENED = "reopened"
    EXTENSION_DECIDED = "extension_decided"
    RELAY_ALERT = "relay_alert"
    JOB_DONE = "job_done"
    #: A recommendation sent to an office: its focal points are asked to respond.
    RESPONSE_REQUEST = "response_request"
    #: A reviewer accepted or declined an action the office proposed; its proposer is told.
    PROPOSAL_DECIDED = "proposal_decided"
    #: An office's indicator values for the quarter just ended are still missing (focal points).
    INDICATORS_DUE = "indicators_due"


class ExtensionState(enum.StrEnum):
    """Where a request for a later deadline stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class HistoryEvent(enum.StrEnum):
    """What a history row records besides a plain update (None): the events that have their own wording."""

    CREATED = "created"
    EDITED = "edited"
    REASSIGNED = "reassigned"
    DEADLINE_SET = "deadline_set"  # a reviewer set the current deadline directly
    EXTENSION_REQUESTED = "extension_requested"
    EXTENSION_APPROVED = "extension_approved"
    EXTENSION_REJECTED = "extension_rejected"
    SENT_BACK = "sent_back"
    VERIFIED = "verified"
    REOPENED = "reopened"
    WITHDRAWN = "withdrawn"  # the office withdrew its completion report
    IMPORTED = "imported"
    PROPOSED = "proposed"  # put forward by the office, awaiting a reviewer
    ACCEPTED = "accepted"  # a reviewer accepted the proposal into the plan
    DECLINED = "declined"  # a reviewer declined the proposal (the item is cancelled)


class NotificationState(enum.StrEnum):
    """Where an outbox row is in its delivery."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Office(db.Model):
    """A participating office, e.g. the Intellectual Property Office of Singapore (SG)."""

    __tablename__ = "office"
    __table_args__ = (sa.CheckConstraint("code = upper(code)", name="code_upper"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: ISO 3166 alpha-2 code of the country, e.g. ``SG``.
    code: Mapped[str] = mapped_column(sa.String(8), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    country: Mapped[str] = mapped_column(sa.String(100))
    #: IANA time zone; reminders go out in the recipients' morning, deadlines fall in this zone.
    timezone: Mapped[str] = mapped_column(sa.String(64))
    #: Default language of the office's users (a locale code such as ``en``).
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    active: Mapped[bool] = mapped_column(default=True)

    users: Mapped[list[User]] = relationship(back_populates="office")

    @validates("timezone")
    def _check_timezone(self, key: str, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone
        return value

    def today(self, now: datetime) -> date:
        """The date it is in this office at the moment ``now``."""
        return now.astimezone(ZoneInfo(self.timezone)).date()

    def __repr__(self) -> str:
        return f"<Office {self.code}>"


class User(UserMixin, db.Model):
    """A person who signs in: admin, reviewer, manager or focal point."""

    __tablename__ = "user_account"
    __table_args__ = (
        sa.CheckConstraint("email = lower(email)", name="email_lower"),
        sa.CheckConstraint(_in("role", Role), name="role_known"),
        # A focal point belongs to an office; admins and reviewers are programme staff.
        sa.CheckConstraint("role <> 'focal_point' OR office_id IS NOT NULL", name="focal_point_has_office"),
        sa.CheckConstraint(
            "role NOT IN ('admin', 'reviewer') OR office_id IS NULL", name="staff_without_office"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-cased, which makes the unique key case-insensitive.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    #: werkzeug scrypt hash; None until an invited user sets a password.
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(20))
    #: The office of a focal point or office manager; None for programme-wide roles.
    office_id: Mapped[int | None] = mapped_column(sa.ForeignKey("office.id"), index=True)
    #: Preferred language; None means the office's, else the browser's.
    language: Mapped[str | None] = mapped_column(sa.String(8))
    #: IANA time zone override; None means the office's zone (UTC without an office).
    timezone: Mapped[str | None] = mapped_column(sa.String(64))
    active: Mapped[bool] = mapped_column(default=True)
    #: Part of every password link (invitation, reset); rotated when the password changes so that
    #: links sent before stop working.
    session_token: Mapped[str] = mapped_column(sa.String(64), default=lambda: secrets.token_urlsafe(32))
    # Notification preferences (overdue, escalation and "sent back" mail cannot be switched off).
    notify_due_soon: Mapped[bool] = mapped_column(default=True)
    notify_stale: Mapped[bool] = mapped_column(default=True)
    notify_digest: Mapped[bool] = mapped_column(default=True)
    notify_assignment: Mapped[bool] = mapped_column(default=True)
    notify_verified: Mapped[bool] = mapped_column(default=True)
    notify_review_queue: Mapped[bool] = mapped_column(default=True)
    notify_indicators_due: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: SHA-256 of the secret in the user's calendar feed URL; None until they create one.
    calendar_token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    #: The TOTP secret (RFC 6238, base32) once the person has enrolled a second factor; None before.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The last time step whose code was accepted: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: The single sign-on provider's subject (``iss`` + ``sub``) once the account was linked to it.
    sso_subject: Mapped[str | None] = mapped_column(sa.String(500), unique=True)

    office: Mapped[Office | None] = relationship(back_populates="users")

    @validates("email")
    def _normalise_email(self, key: str, value: str) -> str:
        return normalise_email(value)

    @validates("role")
    def _check_role(self, key: str, value: str) -> str:
        return Role(value).value

    @validates("timezone")
    def _check_timezone(self, key: str, value: str | None) -> str | None:
        if value:
            ZoneInfo(value)
        return value or None

    def set_password(self, password: str) -> None:
        """Hash and store a new password, ending the user's other sessions."""
        self.password_hash = generate_password_hash(password, method="scrypt")
        self.session_token = secrets.token_urlsafe(32)

    def check_password(self, password: str) -> bool:
        """True if ``password`` matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    #: Set by tracker.auth.signin.finish just before login_user: the new session's cookie identity.
    session_identity = None  # not a column: an instance attribute while signing in

    def get_id(self) -> str:
        """Flask-Login identity: the server-side session's id and secret (tracker.auth.sessions)."""
        if not self.session_identity:
            raise RuntimeError("sign people in through tracker.auth.signin, which opens a session")
        return self.session_identity

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def zone(self) -> ZoneInfo:
        """The time zone in which to show this user times: override, office, else UTC."""
        name = self.timezone or (self.office.timezone if self.office else None) or "UTC"
        return ZoneInfo(name)

    @property
    def has_second_factor(self) -> bool:
        """True once the person has enrolled an authenticator app."""
        return self.totp_secret is not None

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"


def normalise_email(value: str) -> str:
    """The canonical form of an email address: trimmed and lower-cased."""
    return value.strip().lower()


class Source(db.Model):
    """Where recommendations come from: a meeting, an evaluation, a review."""

    __tablename__ = "source"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300), unique=True)
    place: Mapped[str | None] = mapped_column(sa.String(200))
    starts_on: Mapped[date | None]
    ends_on: Mapped[date | None]
    #: Set when archived: hidden from choices and default lists, kept for history.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    recommendations: Mapped[list[Recommendation]] = relationship(back_populates="source")


class Recommendation(db.Model):
    """A recommendation that offices respond to and act on."""

    __tablename__ = "recommendation"
    __table_args__ = (sa.CheckConstraint(_in("priority", Priority), name="priority_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(sa.ForeignKey("source.id"), index=True)
    #: Stable human reference, e.g. ``R-2023-04``.
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    text: Mapped[str] = mapped_column(sa.Text)
    theme: Mapped[str] = mapped_column(sa.String(100), index=True)
    priority: Mapped[str] = mapped_column(sa.String(10), default=Priority.MEDIUM.value)
    target_date: Mapped[date | None]
    #: Set when archived: left out of default lists and the dashboard, kept for history.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    source: Mapped[Source] = relationship(back_populates="recommendations")
    action_items: Mapped[list[ActionItem]] = relationship(back_populates="recommendation")

    def __repr__(self) -> str:
        return f"<Recommendation {self.code}>"


class OfficeResponse(db.Model):
    """One office's position on one recommendation, with a comment."""

    __tablename__ = "office_response"
    __table_args__ = (
        sa.UniqueConstraint("recommendation_id", "office_id"),
        sa.CheckConstraint(_in("response", ResponseKind), name="response_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(sa.ForeignKey("recommendation.id"))
    office_id: Mapped[int] = mapped_column(sa.ForeignKey("office.id"), index=True)
    response: Mapped[str] = mapped_column(sa.String(20))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    responded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    responded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    recommendation: Mapped[Recommendation] = relationship()
    office: Mapped[Office] = relationship()
    responded_by: Mapped[User | None] = relationship()


class ResponseRequest(db.Model):
    """A recommendation sent to one office: its focal points are asked to respond (once per pair)."""

    __tablename__ = "response_request"
    __table_args__ = (sa.UniqueConstraint("recommendation_id", "office_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(sa.ForeignKey("recommendation.id"))
    office_id: Mapped[int] = mapped_column(sa.ForeignKey("office.id"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    recommendation: Mapped[Recommendation] = relationship()
    office: Mapped[Office] = relationship()
    requested_by: Mapped[User | None] = relationship()


class ActionItem(db.Model):
    """One office's action towards a recommendation, with an owner and a deadline."""

    __tablename__ = "action_item"
    __table_args__ = (
        sa.CheckConstraint("progress >= 0 AND progress <= 100", name="progress_range"),
        sa.CheckConstraint(_in("status", Status), name="status_known"),
        # The matrix and the office pages group by (recommendation, office).
        sa.Index(None, "recommendation_id", "office_id"),
        # Office lists and the scheduler filter by office and status, ordered by deadline.
        sa.Index(None, "office_id", "status", "deadline"),
        sa.Index(None, "status", "deadline"),
        # Lists of open items (overdue, My work) read their page from here, by deadline; only
        # open items, so that closed ones (most, in time) are never stepped over.
        sa.Index(
            "ix_action_item_open_deadline",
            "deadline",
            "id",
            sqlite_where=sa.text(OPEN_STATUSES_SQL),
            postgresql_where=sa.text(OPEN_STATUSES_SQL),
        ),
        # Overdue lists and counts read this index alone, also when the offices' dates differ
        # (office_id); in (deadline, id) order within a status, as the lists are ordered.
        sa.Index(None, "status", "deadline", "id", "office_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(sa.ForeignKey("recommendation.id"))
    office_id: Mapped[int] = mapped_column(sa.ForeignKey("office.id"))
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str | None] = mapped_column(sa.Text)
    #: None while the office has not named an owner yet.
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    deputy_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    #: The current deadline, a date in the office's time zone; overdue counts against it.
    deadline: Mapped[date]
    #: The deadline agreed in the plan (the baseline); extensions move ``deadline`` only.
    agreed_deadline: Mapped[date]
    status: Mapped[str] = mapped_column(sa.String(20), default=Status.NOT_STARTED.value)
    #: Percent done, 0 to 100.
    progress: Mapped[int] = mapped_column(default=0)
    #: Optimistic-lock counter: a save based on an older version is refused.
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Time of the last change to the item (the "stale" reminder looks at it).
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    recommendation: Mapped[Recommendation] = relationship(back_populates="action_items")
    office: Mapped[Office] = relationship()
    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    deputy: Mapped[User | None] = relationship(foreign_keys=[deputy_id])
    updates: Mapped[list[ActionUpdate]] = relationship(
        back_populates="action_item", order_by="(ActionUpdate.created_at.desc(), ActionUpdate.id.desc())"
    )
    extensions: Mapped[list[ExtensionRequest]] = relationship(
        back_populates="action_item", order_by="ExtensionRequest.id.desc()"
    )
    #: The request waiting for a decision, if any (read-only; load it with selectinload for lists).
    pending_extension: Mapped[ExtensionRequest | None] = relationship(
        primaryjoin="and_(ExtensionRequest.action_item_id == ActionItem.id, "
        "ExtensionRequest.state == 'pending')",
        viewonly=True,
        uselist=False,
    )

    __mapper_args__ = {"version_id_col": version}

    @validates("status")
    def _check_status(self, key: str, value: str) -> str:
        return Status(value).value

    def is_overdue(self, now: datetime) -> bool:
        """Deadline passed in the office's zone and the item is still open."""
        return self.status not in CLOSED_STATUSES and self.deadline < self.office.today(now)

    def __repr__(self) -> str:
        return f"<ActionItem {self.id} {self.status}>"


class ActionUpdate(db.Model):
    """One entry of an item's history, written with the change it records and never edited."""

    __tablename__ = "action_update"
    __table_args__ = (
        sa.Index(None, "action_item_id", "created_at"),
        sa.CheckConstraint(
            "new_progress IS NULL OR (new_progress >= 0 AND new_progress <= 100)",
            name="new_progress_range",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id"))
    #: None for changes made by the system (an import, the scheduler).
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The item's version once this change was saved: shows what a stale form missed.
    item_version: Mapped[int | None]
    old_status: Mapped[str | None] = mapped_column(sa.String(20))
    new_status: Mapped[str | None] = mapped_column(sa.String(20))
    old_progress: Mapped[int | None]
    new_progress: Mapped[int | None]
    old_deadline: Mapped[date | None]
    new_deadline: Mapped[date | None]
    note: Mapped[str | None] = mapped_column(sa.Text)
    #: An evidence link (files are attached separately).
    evidence_url: Mapped[str | None] = mapped_column(sa.String(2000))
    #: What kind of change this is when it has its own wording (a HistoryEvent); None for an update.
    event: Mapped[str | None] = mapped_column(sa.String(30))
    #: The absent person the author acted for, as their deputy.
    on_behalf_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    #: The extension request this row records (asked, approved or rejected).
    extension_id: Mapped[int | None] = mapped_column(sa.ForeignKey("extension_request.id"), index=True)

    action_item: Mapped[ActionItem] = relationship(back_populates="updates")
    author: Mapped[User | None] = relationship(foreign_keys=[author_id])
    on_behalf_of: Mapped[User | None] = relationship(foreign_keys=[on_behalf_of_id])
    extension: Mapped[ExtensionRequest | None] = relationship()
    files: Mapped[list[EvidenceFile]] = relationship(back_populates="update", order_by="EvidenceFile.id")


class ExtensionRequest(db.Model):
    """A request to move an action's current deadline later, decided by a reviewer."""

    __tablename__ = "extension_request"
    __table_args__ = (
        sa.CheckConstraint(_in("state", ExtensionState), name="state_known"),
        sa.CheckConstraint("requested_deadline > current_deadline", name="later_deadline"),
        # At most one request waits for a decision per action.
        sa.Index(
            "uq_extension_request_pending",
            "action_item_id",
            unique=True,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        ),
        # The review queue: pending requests, oldest first.
        sa.Index(None, "state", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id"), index=True)
    requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The action's current deadline when the request was made.
    current_deadline: Mapped[date]
    requested_deadline: Mapped[date]
    reason: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(10), default=ExtensionState.PENDING.value)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(sa.Text)

    action_item: Mapped[ActionItem] = relationship(back_populates="extensions")
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    @property
    def days(self) -> int:
        """How many days later the requested deadline is."""
        return (self.requested_deadline - self.current_deadline).days


@event.listens_for(ActionItem, "before_insert")
def _agreed_deadline_defaults_to_deadline(mapper: Any, connection: Any, target: ActionItem) -> None:
    # A new action's agreed deadline is its deadline unless given (an import may carry both).
    if target.agreed_deadline is None:
        target.agreed_deadline = target.deadline


@event.listens_for(ActionUpdate, "before_update")
def _history_is_append_only(mapper: Any, connection: Any, target: ActionUpdate) -> None:
    # Also called when only a collection changed (a file attached): refuse column changes only.
    if sa.inspect(target).session.is_modified(target, include_collections=False):
        raise ValueError("ActionUpdate rows are history and are never edited")


class EvidenceFile(db.Model):
    """A file uploaded as evidence with an update; its content is kept in the database
    (``stored_file``), so that every web host serves it and a database backup holds it."""

    __tablename__ = "evidence_file"
    __table_args__ = (
        sa.CheckConstraint("size >= 0", name="size_positive"),
        sa.CheckConstraint("stored_file_id IS NOT NULL OR stored_name IS NOT NULL", name="content_somewhere"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    action_update_id: Mapped[int] = mapped_column(sa.ForeignKey("action_update.id"), index=True)
    #: Copied from the update's item so that the permission check needs no join.
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id"), index=True)
    #: The name the user gave the file (shown and used for downloads, never for storage).
    filename: Mapped[str] = mapped_column(sa.String(255))
    #: The content, in the database.
    stored_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stored_file.id"), unique=True)
    #: Random name in the upload folder (TRACKER_UPLOAD_DIR) of a file written before files were
    #: kept in the database; None once `flask tracker move-uploads` has moved it in.
    stored_name: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    update: Mapped[ActionUpdate] = relationship(back_populates="files")
    action_item: Mapped[ActionItem] = relationship()


class StoredFile(db.Model):
    """A file kept in the database as pieces of at most 1 MB (``file_chunk``), written and read one
    piece at a time: evidence files, and import files waiting for their confirmation."""

    __tablename__ = "stored_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FileChunk(db.Model):
    """One piece of a stored file, in order of ``seq`` (0, 1, 2 …)."""

    __tablename__ = "file_chunk"

    file_id: Mapped[int] = mapped_column(
        sa.ForeignKey("stored_file.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class ImportUpload(db.Model):
    """An uploaded import file waiting between its preview and its confirmation (at most a day),
    in the database so that the confirmation may reach another web host."""

    __tablename__ = "import_upload"

    #: The random token the preview page carries.
    token: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    stored_file_id: Mapped[int] = mapped_column(
        sa.ForeignKey("stored_file.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    stored_file: Mapped[StoredFile] = relationship()


class Absence(db.Model):
    """A period in which a person is away: their reminders and review mail go to their deputies."""

    __tablename__ = "absence"
    __table_args__ = (
        sa.CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        sa.Index(None, "user_id", "ends_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    #: First and last day away (inclusive), in the person's own calendar.
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    note: Mapped[str | None] = mapped_column(sa.String(300))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])


class RecommendationChange(db.Model):
    """History of a recommendation and of the offices' responses to it: one row per field changed."""

    __tablename__ = "recommendation_change"
    __table_args__ = (sa.Index(None, "recommendation_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(sa.ForeignKey("recommendation.id"))
    #: Set for a change of that office's response; None for the recommendation itself.
    office_id: Mapped[int | None] = mapped_column(sa.ForeignKey("office.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The field's name, e.g. ``title``, ``target_date``, ``response``, ``comment``.
    field: Mapped[str] = mapped_column(sa.String(40))
    old_value: Mapped[str | None] = mapped_column(sa.Text)
    new_value: Mapped[str | None] = mapped_column(sa.Text)

    recommendation: Mapped[Recommendation] = relationship()
    office: Mapped[Office | None] = relationship()
    author: Mapped[User | None] = relationship()


class Notification(db.Model):
    """The outbox: one row per (kind, recipient, period), sent by the dispatcher."""

    __tablename__ = "notification"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", NotificationKind), name="kind_known"),
        sa.CheckConstraint(_in("state", NotificationState), name="state_known"),
        # The dispatcher's query: pending rows whose next try has come.
        sa.Index(
            "ix_notification_pending",
            "next_attempt_at",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    recipient_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    #: The address resolved when the message was composed.
    to_address: Mapped[str] = mapped_column(sa.String(254))
    #: e.g. ``overdue:user42:2026-11-24``; inserting a key twice does nothing.
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    subject: Mapped[str] = mapped_column(sa.String(300))
    body_text: Mapped[str] = mapped_column(sa.Text)
    body_html: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(10), default=NotificationState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: A dispatcher has taken the row and is sending it until then; after that, it may be taken again.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Which dispatcher holds the claim (host:pid:random), so that only it renews or releases it.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the relay accepted the message (its reply to the end of DATA is in ``relay_reply``).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    relay_reply: Mapped[str | None] = mapped_column(sa.String(500))
    #: The first try: temporary failures are retried until TRACKER_MAIL_RETRY_WINDOW after it.
    first_tried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: How often the connection broke while this message was in flight (a poison message fails alone).
    breaks: Mapped[int] = mapped_column(default=0)

    recipient: Mapped[User | None] = relationship()


class RelayHealth(db.Model):
    """How the mail relay has been doing, one row per relay (``smtp``), for alerts and the outbox page."""

    __tablename__ = "relay_health"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    #: Set at the first failure after a success; cleared by the next success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: When admins were last told that the relay is failing (once per outage).
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Escalation(db.Model):
    """An overdue item reported at one level of the escalation ladder (once per item per level).

    Written only when a mail to someone at that level (or a level it fell through to) was queued.
    """

    __tablename__ = "escalation"
    __table_args__ = (sa.UniqueConstraint("action_item_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id"))
    #: The rung of TRACKER_ESCALATION_LADDER, 1 for the first.
    level: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ItemNotice(db.Model):
    """A per-item reminder already given, so that it is given once whatever day the job runs.

    ``kind`` is ``overdue`` (the first overdue notice for the deadline ``period``) or ``stale``
    (the nudge for the idle period starting on ``period``).
    """

    __tablename__ = "item_notice"
    __table_args__ = (sa.UniqueConstraint("action_item_id", "kind", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))
    period: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(db.Model):
    """A personal API token: only its SHA-256 is stored; the secret is shown once at creation."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    #: A label the user chose, e.g. "reporting script".
    name: Mapped[str] = mapped_column(sa.String(100))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class UserSession(db.Model):
    """One sign-in: the cookie names it, and it ends for good at sign-out, when idle or too old.

    The cookie carries the row's id and a secret; only the secret's SHA-256 is stored.
    """

    __tablename__ = "user_session"
    __table_args__ = (sa.Index("ix_user_session_user_id_ended_at", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The latest moment it may last (created + TRACKER_SESSION_MAX_DAYS), whatever its use.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: "Keep me signed in": survives closing the browser and idle hours (never the maximum).
    remember: Mapped[bool] = mapped_column(default=False)
    #: How the person proved who they are: password, password+totp, password+recovery, sso, sso+totp …
    method: Mapped[str] = mapped_column(sa.String(30))
    address: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why it ended: signed_out, idle, expired, ended_by_user, ended_by_admin, password_changed,
    #: deactivated, second_factor_reset.
    end_reason: Mapped[str | None] = mapped_column(sa.String(30))

    user: Mapped[User] = relationship()


class RecoveryCode(db.Model):
    """A single-use code that stands in for the authenticator app; only its SHA-256 is stored."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(db.Model):
    """A security event: sign-in, second factor, session, role, token, SSO link (kept TRACKER_AUDIT_DAYS)."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.Index("ix_audit_event_kind_at", "kind", "at"),
        sa.Index("ix_audit_event_subject_id_at", "subject_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    #: What happened (tracker.auth.audit.EVENTS lists the kinds).
    kind: Mapped[str] = mapped_column(sa.String(40))
    #: Who did it (None: nobody signed in, e.g. a failed sign-in, or the system).
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id", ondelete="SET NULL"))
    #: Whose account it concerns.
    subject_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id", ondelete="SET NULL"))
    #: The email given, for events without a known account (a failed sign-in with an unknown email).
    email: Mapped[str | None] = mapped_column(sa.String(254))
    address: Mapped[str | None] = mapped_column(sa.String(64))
    #: A short description: the role change, the token's name, the session ended …
    detail: Mapped[str | None] = mapped_column(sa.String(500))

    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
    subject: Mapped[User | None] = relationship(foreign_keys=[subject_id])


class SchedulerLease(db.Model):
    """The scheduler's lease: one holder at a time runs the jobs; the others wait as standbys."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    #: host:pid:random of the process holding the lease.
    holder: Mapped[str] = mapped_column(sa.String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: JSON: job id → next run time (ISO 8601), shown on the admin outbox page.
    next_runs: Mapped[str | None] = mapped_column(sa.Text)


class SchedulerRun(db.Model):
    """The last run of each scheduler job (one row per job id, rewritten by each run): when it
    started, how long it took, whether it failed, and its figures, for /metrics and the admins."""

    __tablename__ = "scheduler_run"

    job_id: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    #: The scheduler process that ran it (SchedulerLease.holder).
    holder: Mapped[str] = mapped_column(sa.String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float] = mapped_column(sa.Float)
    succeeded: Mapped[bool]
    #: A short line of figures (mails composed, sent …) or the error.
    detail: Mapped[str | None] = mapped_column(sa.String(500))


class JobState(enum.StrEnum):
    """Where a background job stands: queued → running → done, failed or cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BackgroundJob(db.Model):
    """Work too long for a request (a large export, a large import), run by the scheduler process.

    A web request writes the row (and the input file, for an import) and answers at once; the
    scheduler claims queued rows for a short, renewed time (so that a killed process's job is taken
    over), reports progress as it goes, and stores the result file in ``job_chunk`` rows, so that
    any web host can serve it. tracker.jobs runs them.
    """

    __tablename__ = "background_job"
    __table_args__ = (
        sa.CheckConstraint(_in("state", JobState), name="state_known"),
        sa.Index(None, "state", "created_at"),
        sa.Index(None, "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: What to run: export_csv, export_xlsx, import (tracker.jobs.HANDLERS).
    kind: Mapped[str] = mapped_column(sa.String(30))
    #: Who asked; the job runs with their permissions, and only they may download the result.
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(20), default=JobState.QUEUED.value)
    #: JSON: what the job needs (export filters, import options).
    params: Mapped[str] = mapped_column(sa.Text, default="{}")
    #: Progress: ``done`` of ``total`` units (rows); total None while unknown.
    total: Mapped[int | None]
    done: Mapped[int] = mapped_column(default=0)
    #: A short line for the person: what was done, or why it failed.
    message: Mapped[str | None] = mapped_column(sa.Text)
    #: JSON: the result's figures (an import's counts, an export's rows).
    result: Mapped[str | None] = mapped_column(sa.Text)
    #: The result file's name and type, once written to job_chunk (role "output").
    file_name: Mapped[str | None] = mapped_column(sa.String(200))
    content_type: Mapped[str | None] = mapped_column(sa.String(100))
    size: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The scheduler running it, and until when its claim holds (renewed while it runs).
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: How many times it was started (a job whose runner died is started again, up to a limit).
    attempts: Mapped[int] = mapped_column(default=0)

    user: Mapped[User] = relationship()

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing more will happen to it."""
        return self.state in {JobState.DONE, JobState.FAILED, JobState.CANCELLED}

    @property
    def percent(self) -> int | None:
        """Progress in whole percent, None while the total is unknown."""
        if not self.total:
            return 100 if self.state == JobState.DONE else None
        return min(100, self.done * 100 // self.total)


class JobChunk(db.Model):
    """A piece (≤ 1 MB) of a job's input or output file, kept in the database so that every host
    reads it; written and read one piece at a time, never the whole file in memory."""

    __tablename__ = "job_chunk"

    job_id: Mapped[int] = mapped_column(
        sa.ForeignKey("background_job.id", ondelete="CASCADE"), primary_key=True
    )
    #: "input" (an uploaded import file) or "output" (the finished export).
    role: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class DataVersion(db.Model):
    """A counter raised by every write to the programme's data (actions, recommendations, offices,
    extensions), in the writing transaction: cached figures (the dashboard's) are valid while it
    stays the same, on every host. One row, name "programme"."""

    __tablename__ = "data_version"

    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)


DATA_VERSION = "programme"

# The row exists from the start (the migration inserts it too), so that raising it is one UPDATE.
event.listen(
    DataVersion.__table__,
    "after_create",
    sa.DDL(f"INSERT INTO data_version (name, version) VALUES ('{DATA_VERSION}', 0)"),
)


#: The classes whose writes raise the data version (what the dashboard and the lists count);
#: feature modules add theirs with watch_data().
_WATCHED: tuple[type, ...] = (
    Office,
    Recommendation,
    ActionItem,
    ActionUpdate,
    ExtensionRequest,
    OfficeResponse,
    ResponseRequest,
)


def watch_data(*classes: type) -> None:
    """Count writes to ``classes`` as programme data changes (their figures are cached too)."""
    global _WATCHED
    _WATCHED = (*_WATCHED, *classes)


def _watched(instance: object) -> bool:
    return isinstance(instance, _WATCHED)


def mark_data_changed(session: sa.orm.Session) -> None:
    """Say that this transaction wrote programme data by a core statement (the ORM's writes are
    noticed by themselves): the data version is raised when it commits."""
    session.info["data_changed"] = True


@event.listens_for(sa.orm.Session, "before_flush")
def _note_data_change(session: sa.orm.Session, flush_context: Any, instances: Any) -> None:
    if any(_watched(o) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info["data_changed"] = True


@event.listens_for(sa.orm.Session, "before_commit")
def _raise_data_version(session: sa.orm.Session) -> None:
    # Raised at commit rather than at the first write, so that the row is locked (PostgreSQL)
    # only for the commit itself, never for the length of a long transaction.
    session.flush()
    if session.info.pop("data_changed", False):
        session.execute(
            sa.update(DataVersion)
            .where(DataVersion.name == DATA_VERSION)
            .values(version=DataVersion.version + 1)
            .execution_options(synchronize_session=False)
        )


@event.listens_for(sa.orm.Session, "after_rollback")
def _forget_data_change(session: sa.orm.Session) -> None:
    session.info.pop("data_changed", None)
