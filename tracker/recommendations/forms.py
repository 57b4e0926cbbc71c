"""Forms for recommendations, sources and office responses."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from tracker.labels import PRIORITY_LABELS, RESPONSE_LABELS


class RecommendationForm(FlaskForm):
    """Code, title, text, theme, priority, source and target date."""

    code = StringField(
        _l("Code"),
        validators=[
            DataRequired(),
            Length(max=32),
            Regexp(
                r"^[A-Za-z0-9][A-Za-z0-9._-]*$", message=_l("Letters, digits, dots, dashes and underscores.")
            ),
        ],
    )
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=300)])
    text = TextAreaField(_l("Text"), validators=[DataRequired(), Length(max=20000)])
    theme = StringField(_l("Theme"), validators=[DataRequired(), Length(max=100)])
    priority = SelectField(
        _l("Priority"),
        choices=[SelectChoice(k.value, v) for k, v in PRIORITY_LABELS.items()],
        default="medium",
    )
    source_id = SelectField(_l("Source"), coerce=int, choices=[])
    target_date = DateField(_l("Target date"), validators=[Optional()])
    submit = SubmitField(_l("Save recommendation"))


class SourceForm(FlaskForm):
    """A meeting, evaluation or review that produced recommendations."""

    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=300)])
    place = StringField(_l("Place"), validators=[Optional(), Length(max=200)])
    starts_on = DateField(_l("Start date"), validators=[Optional()])
    ends_on = DateField(_l("End date"), validators=[Optional()])
    submit = SubmitField(_l("Save source"))


class ResponseForm(FlaskForm):
    """An office's response to a recommendation."""

    office_id = SelectField(_l("Office"), coerce=int, choices=[])
    response = SelectField(
        _l("Response"), choices=[SelectChoice(k.value, v) for k, v in RESPONSE_LABELS.items()]
    )
    comment = TextAreaField(_l("Comment"), validators=[Optional(), Length(max=5000)])
    submit = SubmitField(_l("Save response"))


class ConfirmForm(FlaskForm):
    """An empty form for a confirmed POST (archive, restore)."""

    submit = SubmitField(_l("Confirm"))
