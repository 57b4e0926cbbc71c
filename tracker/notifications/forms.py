"""Forms for mail preferences and for setting a password from a mailed link."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from tracker.auth.services import MIN_PASSWORD_LENGTH


class PreferencesForm(FlaskForm):
    """The kinds of mail a user may switch off."""

    notify_due_soon = BooleanField(_l("Reminders before a deadline (14 and 3 days before)"))
    notify_stale = BooleanField(_l("A nudge when an action has had no update for a long time"))
    notify_digest = BooleanField(_l("The quarterly digest (managers)"))
    notify_assignment = BooleanField(_l("When I am made owner or deputy of an action"))
    notify_verified = BooleanField(_l("When a reviewer verifies an action of mine"))
    notify_review_queue = BooleanField(_l("The daily list of completions awaiting verification (reviewers)"))
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
