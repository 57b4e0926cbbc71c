"""Forms for recommendations, sources and office responses."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

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


class CheckboxesField(SelectMultipleField):
    """Several choices as a list of checkboxes (works without script)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SendForm(FlaskForm):
    """The offices a recommendation goes to, and the first action optionally drafted for each."""

    offices = CheckboxesField(_l("Offices"), coerce=int, choices=[], validators=[Optional()])
    draft = BooleanField(_l("Draft a first action for each office"))
    draft_title = StringField(
        _l("Title of the drafted actions"),
        validators=[Optional(), Length(max=300)],
        render_kw={"aria-describedby": "draft-title-hint"},
    )
    draft_deadline = DateField(
        _l("Deadline of the drafted actions"),
        validators=[Optional()],
        render_kw={"aria-describedby": "draft-deadline-hint"},
    )
    submit = SubmitField(_l("Send to the offices"))


class NewRecommendationForm(RecommendationForm, SendForm):
    """A new recommendation, and the offices it is sent to at once."""


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
