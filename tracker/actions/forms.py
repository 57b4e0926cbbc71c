"""The forms of the action page and the review queue: update, extension request and decision, verify
(one or several), reopen, withdraw, a proposal's decision."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    DateField,
    HiddenField,
    IntegerField,
    MultipleFileField,
    SelectChoice,
    SelectField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

from tracker.actions import evidence


def web_address(form: FlaskForm, field: URLField) -> None:
    """Only http(s) links with a real host (evidence.link_problem): a javascript: link is not evidence."""
    problem = evidence.link_problem(field.data) if field.data else None
    if problem:
        raise ValidationError(problem)


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
    evidence_url = URLField(_l("Evidence link"), validators=[Optional(), web_address])
    files = MultipleFileField(_l("Evidence files"))
    submit = SubmitField(_l("Save update"))


class VerifyForm(FlaskForm):
    """Verify a reported completion, after its confirmation page; an optional note for the owner."""

    version = HiddenField(validators=[DataRequired()])
    note = TextAreaField(_l("Note to the office (optional)"), validators=[Length(max=5000)])
    submit = SubmitField(_l("Verify"))


class ExtensionRequestForm(FlaskForm):
    """Ask for a later deadline, with the reason."""

    new_deadline = DateField(_l("New deadline"), validators=[Optional()])
    reason = TextAreaField(_l("Reason"), validators=[Length(max=5000)])
    submit = SubmitField(_l("Request the extension"))


class ExtensionDecisionForm(FlaskForm):
    """A reviewer's decision on an extension request; rejecting needs a note."""

    decision = SelectField(
        _l("Decision"),
        choices=[
            SelectChoice("approved", _l("Approve the new deadline")),
            SelectChoice("rejected", _l("Reject: keep the deadline")),
        ],
        validators=[DataRequired()],
    )
    note = TextAreaField(_l("Note (required to reject)"), validators=[Length(max=5000)])
    submit = SubmitField(_l("Record the decision"))


class ReopenForm(FlaskForm):
    """Move a verified action back to in progress, with a note and the progress it is back at."""

    version = HiddenField(validators=[DataRequired()])
    progress = IntegerField(
        _l("Progress it is back at (%)"),
        validators=[Optional(), NumberRange(min=0, max=99, message=_l("Give a number from 0 to 99."))],
    )
    note = TextAreaField(_l("Why is it reopened?"), validators=[Length(max=5000)])
    submit = SubmitField(_l("Reopen"))


class WithdrawForm(FlaskForm):
    """The office withdraws its completion report (back to in progress)."""

    version = HiddenField(validators=[DataRequired()])
    note = TextAreaField(_l("Note (optional)"), validators=[Length(max=5000)])
    submit = SubmitField(_l("Withdraw the completion report"))


class VerifySelectedForm(FlaskForm):
    """Verify several completions after their confirmation page; the items come as ``item`` fields."""

    submit = SubmitField(_l("Verify"))


class ProposalDecisionForm(FlaskForm):
    """A reviewer accepts a proposed action into the plan, or declines it with a note."""

    version = HiddenField(validators=[DataRequired()])
    note = TextAreaField(_l("Note to the office (required to decline)"), validators=[Length(max=5000)])
    accept = SubmitField(_l("Accept into the plan"))
    decline = SubmitField(_l("Decline"))
