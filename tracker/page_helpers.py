"""Small pieces every page uses, kept valid HTML: machine-readable times, the hidden fields of a
form, and the site's icon (the Nu HTML Checker runs on every main page: tests/test_html_valid.py)."""

from __future__ import annotations

from datetime import date, datetime

from flask import Flask, redirect, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.wrappers import Response
from wtforms.widgets import HiddenInput


def isotime(value: date | datetime) -> str:
    """A ``<time datetime>`` value: a date, or a time to the second (HTML allows at most milliseconds)."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return value.isoformat()


def hidden_fields(form: FlaskForm) -> Markup:
    """What ``form.hidden_tag()`` renders (the CSRF token, a version), without ids: a page may hold
    several forms, each with its token, and an id must be unique on the page (no label needs them)."""
    return Markup("\n".join(str(f(id=False)) for f in form if isinstance(f.widget, HiddenInput)))


def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page says: send them to the SVG icon."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


def register_page_helpers(app: Flask) -> None:
    """Add the ``isotime`` filter, the ``hidden_fields`` global and the /favicon.ico route."""
    app.jinja_env.filters["isotime"] = isotime
    app.jinja_env.globals["hidden_fields"] = hidden_fields
    app.add_url_rule("/favicon.ico", "favicon", favicon)
