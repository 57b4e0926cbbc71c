"""Forms of the profile page: naming a new API token, and confirming a change."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, SubmitField
from wtforms.validators import DataRequired, Length

from tracker.api.auth import NAME_MAX


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


class ConfirmForm(FlaskForm):
    """An empty form for a confirmed POST (revoke, regenerate, turn off)."""

    submit = SubmitField(_l("Confirm"))
