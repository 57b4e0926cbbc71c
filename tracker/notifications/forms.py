"""Forms for mail preferences, for setting a password from a mailed link, and for the admin outbox."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, PasswordField, SelectField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from tracker.auth.services import MIN_PASSWORD_LENGTH


class PreferencesForm(FlaskForm):
    """The kinds of mail a user may switch off."""

    notify_due_soon = BooleanField(_l("Reminders before a deadline (14 and 3 days before)"))
    notify_stale = BooleanField(_l("A nudge when an action has had no update for a long time"))
    notify_digest = BooleanField(_l("The quarterly digest (managers)"))
    notify_assignment = BooleanField(_l("When I am made owner or deputy of an action"))
    notify_verified = BooleanField(_l("When a reviewer verifies an action of mine"))
    notify_review_queue = BooleanField(_l("The daily list of completions awaiting verification (reviewers)"))
    notify_indicators_due = BooleanField(
        _l("A reminder when my office's indicator values for a quarter are still missing (focal points)")
    )
    submit = SubmitField(_l("Save preferences"))


class SetPasswordForm(FlaskForm):
    """A new password, twice."""

    new = PasswordField(
        _l("New password"),
        validators=[
            DataRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=1024,
                message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD_LENGTH),
            ),
        ],
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(), EqualTo("new", message=_l("The two passwords differ."))],
    )
    submit = SubmitField(_l("Set password"))


class ForgotPasswordForm(FlaskForm):
    """The address to send a reset link to."""

    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    submit = SubmitField(_l("Send me a link"))


class UnsubscribeForm(FlaskForm):
    """Confirms a one-click unsubscribe from the page (mail clients POST without it)."""

    submit = SubmitField(_l("Stop these emails"))


class ResendFailedForm(FlaskForm):
    """Which failed messages to send again: a kind (or all) and the days they were queued on."""

    class Meta:
        csrf = False  # the selection is read from the query string (GET); the confirmation posts with CSRF

    kind = SelectField(_l("Kind"), choices=[], validate_choice=True)
    since = DateField(_l("Queued from"), validators=[Optional()])
    until = DateField(_l("Queued until"), validators=[Optional()])

    def validate_until(self, field: DateField) -> None:
        """The period ends on or after its first day."""
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError(_l("The last day cannot be before the first day."))


class ConfirmForm(FlaskForm):
    """An empty form for a confirmed POST (its CSRF token)."""

    submit = SubmitField(_l("Send them again"))
