"""Forms for adding and editing actions of an office's plan, and for reassigning them.

The selects take any submitted id (``validate_choice=False``): the services decide who may own an
action and which recommendations are in use, so a forged value gets the same clear message as a
stale page would, next to its field.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, HiddenField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from tracker.params import whole_number


def optional_id(value: Any) -> int | None:
    """Coerce a select's value: an empty choice is None, anything else an id in the database's range.

    Anything else is invalid (ValueError), before it reaches a query where it would overflow.
    """
    if value in (None, ""):
        return None
    number = whole_number(str(value))
    if number is None:
        raise ValueError(f"not an id: {value!r}")
    return number


class ActionForm(FlaskForm):
    """An action of an office's plan; the choices are set per office."""

    #: The item's version the form was based on (edits only): a save based on an older one is refused.
    version = HiddenField()
    title = StringField(
        _l("Title"),
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
        validators=[DataRequired(message=_l("Give the action a title.")), Length(max=300)],
    )
    recommendation_id = SelectField(
        _l("Recommendation"), coerce=optional_id, choices=[], validate_choice=False
    )
    owner_id = SelectField(_l("Owner"), coerce=optional_id, choices=[], validate_choice=False)
    deputy_id = SelectField(_l("Deputy (optional)"), coerce=optional_id, choices=[], validate_choice=False)
    deadline = DateField(_l("Deadline"), validators=[InputRequired(message=_l("Give the deadline."))])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=5000)])
    note = TextAreaField(_l("Note for the history (optional)"), validators=[Optional(), Length(max=2000)])
    submit = SubmitField(_l("Save action"))


class ReassignForm(FlaskForm):
    """Who leaves, who takes over, and whether closed actions move too."""

    leaving_id = SelectField(_l("Person leaving"), coerce=optional_id, choices=[], validate_choice=False)
    successor_id = SelectField(_l("Takes over"), coerce=optional_id, choices=[], validate_choice=False)
    include_closed = BooleanField(_l("Include closed actions (completed, verified, cancelled)"))
    #: Set by the preview: the confirmation applies only to the list that was shown.
    fingerprint = HiddenField()
    preview = SubmitField(_l("Preview the changes"))
    confirm = SubmitField(_l("Reassign"))
