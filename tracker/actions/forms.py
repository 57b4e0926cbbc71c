"""The action update form."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    HiddenField,
    IntegerField,
    MultipleFileField,
    SelectField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.validators import URL, DataRequired, Length, NumberRange, Optional, ValidationError


def web_address(form: FlaskForm, field: URLField) -> None:
    """Only http and https links: a javascript: or file: link is not evidence."""
    if field.data and not field.data.lower().startswith(("http://", "https://")):
        raise ValidationError(_l("Give a web address starting with http:// or https://."))


class UpdateForm(FlaskForm):
    """Status, progress, deadline, a note and evidence; choices are set per user and item."""

    version = HiddenField(validators=[DataRequired()])
    status = SelectField(_l("Status"), choices=[])
    progress = IntegerField(
        _l("Progress (%)"),
        validators=[Optional(), NumberRange(min=0, max=100, message=_l("Give a number from 0 to 100."))],
    )
    deadline = DateField(_l("Deadline"), validators=[Optional()])
    note = TextAreaField(_l("Note"), validators=[Length(max=5000)])
    evidence_url = URLField(
        _l("Evidence link"),
        validators=[
            Optional(),
            Length(max=2000),
            URL(require_tld=False, message=_l("Give a full web address.")),
            web_address,
        ],
    )
    files = MultipleFileField(_l("Evidence files"))
    submit = SubmitField(_l("Save update"))


class VerifyForm(FlaskForm):
    """The verification queue's one-click form: it posts status=verified to the action page."""

    submit = SubmitField(_l("Verify"))
