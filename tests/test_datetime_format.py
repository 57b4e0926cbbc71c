"""Moments shown to people (pages and mail) are written to the minute, never with seconds, in the
reader's language and time zone; machine-readable values keep their precision."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from flask import render_template_string
from flask_babel import force_locale

from tracker.extensions import db
from tracker.models import ActionUpdate, User
from tracker.notifications.render import mail_environment

WHEN = datetime(2026, 11, 24, 20, 30, 45, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locale", "width", "expected"),
    [
        ("en", "short", "11/24/26, 8:30\u202fPM"),
        ("en", "medium", "Nov 24, 2026, 8:30\u202fPM"),
        ("en", "long", "November 24, 2026, 8:30\u202fPM"),
        ("en", "full", "Tuesday, November 24, 2026, 8:30\u202fPM"),
        ("fr", "short", "24/11/2026 20:30"),
        ("fr", "medium", "24 nov. 2026, 20:30"),
        ("es", "medium", "24 nov 2026, 20:30"),
        ("es", "long", "24 de noviembre de 2026, 20:30"),
    ],
)
def test_the_filter_writes_the_locales_date_and_hours_and_minutes(app, locale, width, expected):
    with app.test_request_context(), force_locale(locale):
        written = render_template_string("{{ when|datetimeformat(width) }}", when=WHEN, width=width)
        default = render_template_string("{{ when|datetimeformat }}", when=WHEN)
    assert written == expected
    assert not re.search(r"\d:\d\d:\d\d", written)
    if width == "medium":
        assert default == expected  # the filter's default width


def test_a_pattern_is_used_as_given(app):
    with app.test_request_context(), force_locale("en"):
        assert render_template_string("{{ when|datetimeformat('HH:mm:ss') }}", when=WHEN) == "20:30:45"


def test_mail_writes_moments_the_same_way(app):
    with app.app_context(), force_locale("es"):
        text = mail_environment().from_string("{{ when|datetimeformat('medium') }}").render(when=WHEN)
    assert text == "24 nov 2026, 20:30"


def test_a_page_shows_the_readers_zone_to_the_minute_and_keeps_the_machine_value(app, world, login_as):
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        user.timezone, user.language = "Asia/Singapore", "fr"
        db.session.add(
            ActionUpdate(action_item_id=world.items["SG"], author=user, note="Late call", created_at=WHEN)
        )
        db.session.commit()
    text = login_as(world.users["focal_sg"]).get(f"/actions/{world.items['SG']}").text
    # 20:30 UTC is 04:30 the next day in Singapore: the date moves with the time.
    entry = text.split("Late call", 1)[0].rsplit("<time datetime=", 1)[1]
    assert entry.startswith('"2026-11-24T20:30:45')  # the attribute is left as it is
    assert ">25 nov. 2026, 04:30</time>" in entry
    assert not re.search(r">[^<]*\d:\d\d:\d\d[^<]*<", text)  # no seconds anywhere on the page
