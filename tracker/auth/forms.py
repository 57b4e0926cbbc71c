"""Sign-in, password and second-factor forms."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from tracker.auth.services import MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField(_l("Keep me signed in on this device"))
    submit = SubmitField(_l("Sign in"))


class PasswordChangeForm(FlaskForm):
    """The current password, and the new one twice."""

    current = PasswordField(_l("Current password"), validators=[DataRequired()])
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
    submit = SubmitField(_l("Change password"))


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class SecondFactorForm(FlaskForm):
    """The six-digit code the authenticator app shows now."""

    code = StringField(
        _l("Code from your authenticator app"),
        filters=[_strip],
        validators=[DataRequired(message=_l("Type the six-digit code your app shows.")), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"},
    )
    submit = SubmitField(_l("Verify"))


class RecoveryCodeForm(FlaskForm):
    """One of the recovery codes, in place of the app's code."""

    code = StringField(
        _l("Recovery code"),
        filters=[_strip],
        validators=[DataRequired(message=_l("Type one of your recovery codes.")), Length(max=40)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"},
    )
    submit = SubmitField(_l("Verify"))


class RemoveSecondFactorForm(FlaskForm):
    """The password and a current code, to turn the second factor off."""

    password = PasswordField(_l("Your password"), validators=[DataRequired(), Length(max=1024)])
    code = StringField(
        _l("Code from your authenticator app, or a recovery code"),
        filters=[_strip],
        validators=[DataRequired(), Length(max=40)],
        render_kw={"autocomplete": "one-time-code", "spellcheck": "false"},
    )
    submit = SubmitField(_l("Remove the second factor"))
