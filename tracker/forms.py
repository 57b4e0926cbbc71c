"""What the forms of every feature share: putting a service's refusal where the person sees it."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm

from tracker.extensions import db


def show_refusal(form: FlaskForm, error: Any) -> None:
    """Roll back, then put ``error.message`` next to the field ``error.field`` names, else above the form."""
    db.session.rollback()
    field = getattr(form, error.field, None) if getattr(error, "field", None) else None
    if field is not None:
        field.errors = [*field.errors, error.message]
    else:
        form.form_errors.append(error.message)
