"""Forms of the profile page: language and time zone, a new API token, an absence, a confirmation."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from tracker.admin.forms import TIMEZONE_HINT_ID, valid_timezone
from tracker.api.auth import NAME_MAX
from tracker.profile.absences import NOTE_MAX


class TokenForm(FlaskForm):
    """A new personal API token: only its name is asked for."""

    name = StringField(
        _l("Name"),
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[
            DataRequired(message=_l("Give the token a name, e.g. what will use it.")),
            Length(max=NAME_MAX),
        ],
        description=_l("What will use it, e.g. “reporting script”."),
    )
    submit = SubmitField(_l("Create token"))


class AbsenceForm(FlaskForm):
    """An absence: first and last day away (inclusive), and an optional note."""

    starts_on = DateField(
        _l("First day away"), validators=[InputRequired(message=_l("Give the first day of the absence."))]
    )
    ends_on = DateField(
        _l("Last day away"), validators=[InputRequired(message=_l("Give the last day of the absence."))]
    )
    note = StringField(
        _l("Note (optional)"),
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[Optional(), Length(max=NOTE_MAX)],
    )
    submit = SubmitField(_l("Record absence"))


class ConfirmForm(FlaskForm):
    """An empty form for a confirmed POST (revoke, regenerate, turn off)."""

    submit = SubmitField(_l("Confirm"))


class SettingsForm(FlaskForm):
    """One's own language and time zone; blank follows the office. Choices are set by the view."""

    language = SelectField(_l("Language"), choices=[])
    timezone = SelectField(
        _l("Time zone"),
        choices=[],
        validate_choice=False,  # valid_timezone words the refusal
        validators=[Optional(), valid_timezone],
        render_kw={"aria-describedby": TIMEZONE_HINT_ID},
    )
