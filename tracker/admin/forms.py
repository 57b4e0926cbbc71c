"""Forms of the admin pages: users, offices, and the confirmation of a one-click change."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError

from tracker import labels
from tracker.admin.services import timezone_names
from tracker.auth.services import MIN_PASSWORD_LENGTH
from tracker.labels import ROLE_LABELS
from tracker.models import Office

TIMEZONE_HINT_ID = "timezone-hint"


def valid_timezone(form: FlaskForm, field: Field) -> None:
    """WTForms validator: a known IANA time zone name (blank is left to Optional/DataRequired).

    The field is a select, but a forged value gets this message rather than "Not a valid choice".
    """
    if field.data and field.data.strip() not in timezone_names():
        raise ValidationError(_l("Unknown time zone: choose one from the list."))


def timezone_choices(blank_label: str | None = None) -> list[SelectChoice]:
    """Every IANA time zone name, sorted, after an optional blank choice."""
    named = [SelectChoice(zone, zone) for zone in sorted(timezone_names())]
    return ([SelectChoice("", blank_label)] if blank_label is not None else []) + named


def language_choices(blank_label: str | None = None) -> list[SelectChoice]:
    """The configured languages, each named in itself (English, Français…), after an optional blank."""
    named = [
        SelectChoice(code, name, render_kw={"lang": code.replace("_", "-")})
        for code, name in labels.language_choices()
    ]
    return ([SelectChoice("", blank_label)] if blank_label is not None else []) + named


def office_choices(offices: list[Office], blank_label: str) -> list[SelectChoice]:
    """Offices by code for a select, after a blank choice; inactive ones are marked."""
    choices = [SelectChoice("", blank_label)]
    for office in offices:
        label = f"{office.code} — {office.name}"
        if not office.active:
            label += " " + str(_l("(inactive)"))
        choices.append(SelectChoice(office.code, label))
    return choices


def _timezone_field(label: Any, *validators: Any) -> SelectField:
    # Choices are set by the view (timezone_choices); valid_timezone words the refusal of a forged one.
    # No "required" attribute: every option is a zone (HTML wants a blank first option otherwise).
    return SelectField(
        label,
        choices=[],
        validate_choice=False,
        validators=[*validators, valid_timezone],
        render_kw={"aria-describedby": TIMEZONE_HINT_ID, "required": False},
    )


class UserEditForm(FlaskForm):
    """What an admin may change about a user; the office and language choices are set by the view."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    role = SelectField(
        _l("Role"), choices=[SelectChoice(role.value, label) for role, label in ROLE_LABELS.items()]
    )
    office = SelectField(_l("Office"), choices=[])
    language = SelectField(_l("Language"), choices=[])
    timezone = _timezone_field(_l("Time zone"), Optional())


class UserCreateForm(UserEditForm):
    """A new user: the edit fields, an email, and either an invitation or an initial password."""

    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    invite = BooleanField(_l("Email an invitation: the user chooses their own password"), default=True)
    password = PasswordField(
        _l("Initial password"),
        validators=[
            Optional(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=1024,
                message=_l("Use at least %(num)d characters.", num=MIN_PASSWORD_LENGTH),
            ),
        ],
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        _l("Repeat the initial password"),
        validators=[EqualTo("password", message=_l("The two passwords differ."))],
        render_kw={"autocomplete": "new-password"},
    )

    def validate(self, extra_validators: Any = None) -> bool:
        """The fields' own checks, then: without an invitation, the admin must give a password."""
        valid = super().validate(extra_validators)
        if not self.invite.data and not self.password.data:
            self.password.errors = [
                *self.password.errors,
                _l("Give an initial password, or send an invitation."),
            ]
            return False
        return valid


class OfficeEditForm(FlaskForm):
    """What an admin may change about an office (not its code); language choices set by the view."""

    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    country = StringField(_l("Country"), validators=[DataRequired(), Length(max=100)])
    timezone = _timezone_field(_l("Time zone"), DataRequired())
    language = SelectField(_l("Default language of its users"), choices=[])
    active = BooleanField(_l("Active (its users can be assigned to it)"), default=True)


class OfficeCreateForm(OfficeEditForm):
    """A new office: the edit fields and a code, which cannot change later."""

    code = StringField(
        _l("Code"),
        validators=[
            DataRequired(),
            Regexp(r"^[A-Za-z]{2,8}$", message=_l("The code is 2 to 8 letters, e.g. SG.")),
        ],
        render_kw={"autocapitalize": "characters", "autocomplete": "off"},
    )


class ConfirmForm(FlaskForm):
    """No fields: the CSRF token of a confirmation button (deactivate, reactivate, reset)."""
