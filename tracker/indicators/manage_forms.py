"""Forms for managing indicators: the indicator itself, and every office's baseline and target."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Field, SelectChoice, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length

from tracker.extensions import db
from tracker.indicators.models import IndicatorTarget
from tracker.labels import DIRECTION_LABELS, UNIT_LABELS
from tracker.models import Office, Recommendation

#: The goal fields of one office, in the order of the form's columns.
GOAL_FIELDS = ("baseline_value", "baseline_period", "target_value", "target_period")


class IndicatorForm(FlaskForm):
    """Code, name, definition, unit, direction and the recommendation measured (optional).

    The rules (code format, one code per indicator, a fixed unit once values exist) are checked by
    services.save_indicator, whose refusal is put beside the field it names.
    """

    code = StringField(
        _l("Code"),
        validators=[Length(max=32)],
        render_kw={"aria-describedby": "code-hint", "autocomplete": "off"},
    )
    name = StringField(_l("Name"), validators=[Length(max=200)])
    definition = TextAreaField(
        _l("Definition"), validators=[Length(max=5000)], render_kw={"aria-describedby": "definition-hint"}
    )
    unit = SelectField(_l("Unit"), choices=[SelectChoice(k.value, v) for k, v in UNIT_LABELS.items()])
    direction = SelectField(
        _l("Direction"), choices=[SelectChoice(k.value, v) for k, v in DIRECTION_LABELS.items()]
    )
    recommendation_id = SelectField(_l("Recommendation measured"), choices=[], validate_choice=False)
    submit = SubmitField(_l("Save indicator"))

    def offer_recommendations(self) -> None:
        """The recommendations not archived, by code (one statement), after "None"."""
        rows = db.session.execute(
            sa.select(Recommendation.id, Recommendation.code, Recommendation.title)
            .where(Recommendation.archived_at.is_(None))
            .order_by(Recommendation.code)
        ).all()
        self.recommendation_id.choices = [SelectChoice("", _l("None"))] + [
            SelectChoice(str(id_), f"{code} — {title}") for id_, code, title in rows
        ]

    def recommendation(self) -> int | None:
        """The recommendation chosen, as an id (a forged value is checked by the service)."""
        raw = (self.recommendation_id.data or "").strip()
        return int(raw) if raw.isdigit() and len(raw) < 10 else None


class GoalsForm(FlaskForm):
    """Every office's baseline and target (fields added per office by :func:`goals_form`)."""

    submit = SubmitField(_l("Save baselines and targets"))

    def office_fields(self, office: Office) -> list[Field]:
        """The four fields of an office, in column order."""
        return [self[goal_field_name(office.id, name)] for name in GOAL_FIELDS]


def goal_field_name(office_id: int, name: str) -> str:
    """The name of an office's goal field, e.g. ``o3_target_value``."""
    return f"o{office_id}_{name}"


def _plain(value: float | None) -> str:
    """A value as the form shows it: ``60``, ``87.5``; blank for none."""
    return "" if value is None else f"{value:g}"


def goals_form(offices: Iterable[Office], targets: dict[int, IndicatorTarget], **kwargs: object) -> GoalsForm:
    """A form with four fields per office, filled with the office's current baseline and target."""
    offices = list(offices)

    class Form(GoalsForm):
        pass

    labels = {
        "baseline_value": _l("Baseline value"),
        "baseline_period": _l("Baseline quarter"),
        "target_value": _l("Target value"),
        "target_period": _l("Target quarter"),
    }
    for office in offices:
        target = targets.get(office.id)
        for name in GOAL_FIELDS:
            current = getattr(target, name) if target else None
            default = _plain(current) if name.endswith("value") else (current or "")
            setattr(
                Form,
                goal_field_name(office.id, name),
                StringField(
                    labels[name],
                    default=default,
                    validators=[Length(max=40)],
                    render_kw={"inputmode": "decimal"}
                    if name.endswith("value")
                    else {"placeholder": "2026Q4"},
                ),
            )
    return Form(**kwargs)
