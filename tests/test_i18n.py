"""French and Spanish: complete catalogues in step with the code, pages and mail without English."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tracker.extensions import db
from tracker.models import ActionItem, User

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "tracker" / "translations"
LANGUAGES = ["fr", "es"]


def _catalog(language: str):
    with (CATALOGS / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated_and_none_is_fuzzy(language):
    catalog = _catalog(language)
    missing, fuzzy = [], []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            missing.append(message.id)
        if message.fuzzy:
            fuzzy.append(message.id)
    assert not missing, f"{len(missing)} untranslated in {language}, e.g. {missing[:5]}"
    assert not fuzzy, f"{len(fuzzy)} fuzzy in {language}, e.g. {fuzzy[:5]}"


def test_catalogues_hold_every_string_of_the_code(tmp_path):
    """`make translations` has been run: no marked string is missing from the template."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as handle:
        in_code = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    for language in LANGUAGES:
        in_catalog = {m.id if isinstance(m.id, str) else m.id[0] for m in _catalog(language) if m.id}
        assert in_code <= in_catalog, (
            f"{language} lacks {sorted(in_code - in_catalog)[:5]}: run make translations"
        )


def _english_fragments(language: str) -> list[str]:
    """English sentences of the UI (3 words or more, between placeholders) that the language changes."""
    fragments = set()
    for message in _catalog(language):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if ids[0] == strings[0]:
            continue
        for text in ids:
            for part in re.split(r"%\(\w+\)[sdr]|%[sd]", text):
                part = part.strip(" .,:;“”()—-")
                if len(part.split()) >= 3:
                    fragments.add(part)
    return sorted(fragments)


def _english_in(text: str, fragments: list[str]) -> list[str]:
    plain = html.unescape(text)
    return [fragment for fragment in fragments if fragment in plain]


PAGES = {
    "focal_sg": [
        "/",
        "/my",
        "/recommendations",
        "/recommendations/{rec}",
        "/actions/{item}",
        "/dashboard",
        "/offices/SG",
        "/preferences",
        "/auth/password",
        "/indicators/",
        "/indicators/{ind}",
        "/indicators/report",
        "/indicators/import",
        "/indicators/measurements/{value}",
    ],
    "reviewer": [
        "/verification",
        "/sources",
        "/recommendations/new",
        "/offices/SG/reassign",
        "/verification?kind=values",
        "/indicators/new",
        "/indicators/{ind}/goals",
    ],
    "admin": ["/admin/users", "/admin/users/new", "/admin/offices", "/admin/outbox"],
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_main_pages_have_no_english_sentence(app, world, indicators, login_as, client, language):
    fragments = _english_fragments(language)
    with app.app_context():
        for user in db.session.query(User):
            user.language = language
        db.session.commit()
    found = {}
    anonymous = client.get("/auth/login", headers={"Accept-Language": language}).text
    found["/auth/login"] = _english_in(anonymous, fragments)
    for role, urls in PAGES.items():
        c = login_as(world.users[role])
        for url in urls:
            response = c.get(
                url.format(
                    rec=world.recommendation_id,
                    item=world.items["SG"],
                    ind=indicators.indicators["ONLINE"],
                    value=indicators.measurements["online_sg_q3"],
                )
            )
            assert response.status_code == 200, url
            found[url] = _english_in(response.text, fragments)
    assert not any(found.values()), {url: words for url, words in found.items() if words}


@pytest.mark.parametrize("language", LANGUAGES)
def test_mail_of_every_kind_has_no_english_sentence(app, world, language):
    from tracker.notifications.render import render_email

    fragments = _english_fragments(language)
    with app.app_context():
        user = db.session.get(User, world.user_ids["focal_sg"])
        user.language = language
        item = db.session.get(ActionItem, world.items["SG"])
        admin = db.session.get(User, world.user_ids["admin"])
        rendered = {
            "invitation": render_email("invitation", user, url="http://x/", invited_by=admin, days=7),
            "password_reset": render_email("password_reset", user, url="http://x/", hours=2),
            "assignment": render_email("assignment", user, items=[item], role="owner"),
            "sent_back": render_email("sent_back", user, item=item, note="n"),
            "verified": render_email("verified", user, item=item, note="n"),
        }
        db.session.rollback()
    for kind, email in rendered.items():
        for part in (email.subject, email.text, email.html):
            assert not _english_in(part, fragments), (kind, _english_in(part, fragments))


@pytest.mark.parametrize("language", LANGUAGES)
def test_reminders_and_digests_are_written_in_the_recipients_language(app, world, indicators, language):
    """Compose every scheduled kind for French or Spanish recipients; no English sentence in them."""
    from datetime import UTC, date, datetime

    import sqlalchemy as sa

    from tracker.models import Notification
    from tracker.notifications.compose import compose_digests, compose_reminders
    from tracker.notifications.digest import Quarter
    from tracker.notifications.indicators_due import compose_indicators_due

    fragments = _english_fragments(language)
    with app.app_context():
        for user in db.session.query(User):
            user.language = language
        sg = db.session.get(ActionItem, world.items["SG"])
        my = db.session.get(ActionItem, world.items["MY"])
        sg.deadline = date(
            2026, 10, 1
        )  # 55 days overdue on 2026-11-25: overdue (n = 1 + 7k? no) and escalation
        my.status = "completed"
        db.session.commit()
        moments = [
            datetime(2026, 11, 25, 10, tzinfo=UTC),
            datetime(2026, 10, 2, 10, tzinfo=UTC),
            datetime(2026, 9, 17, 10, tzinfo=UTC),
        ]
        for moment in moments:
            compose_reminders(moment)
            compose_indicators_due(moment)
        compose_digests(Quarter(2026, 3), datetime(2026, 10, 1, 6, tzinfo=UTC))
        db.session.commit()
        rows = list(db.session.scalars(sa.select(Notification)))
        kinds = {row.kind for row in rows}
        for row in rows:
            for part in (row.subject, row.body_text, row.body_html):
                assert not _english_in(part, fragments), (row.kind, _english_in(part, fragments))
    # 2026-11-25 is more than 14 days after 2026Q3 ended: MY owes ONLINE and GUIDE, and EXAM was sent back.
    assert {"overdue", "escalation", "due_soon", "review_queue", "indicators_due", "digest"} <= kinds, kinds
