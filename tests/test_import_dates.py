"""Dates in an imported file: ISO everywhere, else the day/month order of the importing person's
locale (fr, es, en-GB: 31/03/2027; en, en-US: 03/31/2027); without a locale (the command line), an
ambiguous date is refused with both readings. Through the real upload, preview and confirmation."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from tests.test_import import _csv, _preview, _upload, _xlsx
from tracker.extensions import db
from tracker.jobs import run_pending
from tracker.models import ActionItem, User
from tracker.transfer.cells import date_order
from tracker.transfer.columns import COLUMNS

DAY_FIRST = [("fr", None), ("es", None), ("en", "en-GB,en;q=0.8")]
MONTH_FIRST = [("en", None), ("en", "en-US,en;q=0.8")]


@pytest.fixture
def importer(app, world, login_as):
    """Factory: the reviewer signed in with this language and (optionally) browser languages."""

    def make(language: str, accept: str | None):
        with app.app_context():
            db.session.get(User, world.user_ids["reviewer"]).language = language
            db.session.commit()
        client = login_as(world.users["reviewer"])
        if accept:
            client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept
        return client

    return make


def _rows(*deadlines: str) -> str:
    """One new action of SG per deadline, titled by its row number."""
    return _csv(
        [
            {
                "recommendation_code": "R-1",
                "office_code": "SG",
                "action_title": f"Row {n}",
                "owner_email": "focal.sg@example.test",
                "deadline": deadline,
            }
            for n, deadline in enumerate(deadlines, start=2)
        ]
    )


def _problems(page: str) -> list[tuple[str, str, str]]:
    """(row, column, message) of each problem of the preview, whatever the page's language."""
    found = re.findall(
        r'<tr class="problem"><td[^>]*>([^<]*)</td><td[^>]*><code>([^<]*)</code></td><td[^>]*>(.*?)</td>',
        page,
        re.S,
    )
    return [(row, column, html.unescape(message)) for row, column, message in found]


def _import(client, content: str) -> dict[str, date]:
    """Preview a file without problems, confirm it; the deadlines written, by action title."""
    url, page = _preview(client, content)
    assert _problems(page) == [], _problems(page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(url, data={"csrf_token": token}).status_code in (302, 303)
    with client.application.app_context():
        rows = db.session.execute(sa.select(ActionItem.title, ActionItem.deadline)).all()
    return {title: deadline for title, deadline in rows if title.startswith("Row ")}


@pytest.mark.parametrize(("language", "accept"), DAY_FIRST, ids=["fr", "es", "en-GB"])
def test_day_first_readers(importer, language, accept):
    """31/03/2027, 31.03.2027 and 31-03-2027 are 31 March; 04/05/2027 is 4 May; ISO still reads."""
    client = importer(language, accept)
    deadlines = _import(client, _rows("31/03/2027", "31.03.2027", "31-03-2027", "04/05/2027", "2027-06-30"))
    assert deadlines == {
        "Row 2": date(2027, 3, 31),
        "Row 3": date(2027, 3, 31),
        "Row 4": date(2027, 3, 31),
        "Row 5": date(2027, 5, 4),
        "Row 6": date(2027, 6, 30),
    }


@pytest.mark.parametrize(("language", "accept"), DAY_FIRST, ids=["fr", "es", "en-GB"])
def test_day_first_readers_refuse_month_first(importer, language, accept):
    """03/31/2027 is no date for them: the problem names the row, the column and the forms to use."""
    client = importer(language, accept)
    _, page = _preview(client, _rows("2027-01-31", "03/31/2027"))
    [(row, column, message)] = _problems(page)
    assert (row, column) == ("3", "deadline")
    assert "03/31/2027" in message and "YYYY-MM-DD" in message and "DD/MM/YYYY" in message


@pytest.mark.parametrize(("language", "accept"), MONTH_FIRST, ids=["en", "en-US"])
def test_month_first_readers(importer, language, accept):
    """03/31/2027 is 31 March and 04/05/2027 is 5 April; 31/03/2027 is refused."""
    client = importer(language, accept)
    _, page = _preview(client, _rows("31/03/2027"))
    [(row, column, message)] = _problems(page)
    assert (row, column) == ("2", "deadline")
    assert message == "31/03/2027 is not a date: write it YYYY-MM-DD or MM/DD/YYYY, e.g. 2026-11-24."
    deadlines = _import(client, _rows("03/31/2027", "04/05/2027", "12.01.2027", "2027-06-30"))
    assert deadlines == {
        "Row 2": date(2027, 3, 31),
        "Row 3": date(2027, 4, 5),
        "Row 4": date(2027, 12, 1),
        "Row 5": date(2027, 6, 30),
    }


def test_dates_that_do_not_exist_are_refused_with_the_forms_to_use(importer):
    """30 February, or a 13th month, in the reader's order: refused, saying how to write a date."""
    client = importer("fr", None)
    _, page = _preview(client, _rows("2027-02-30", "13/13/2027"))
    problems = _problems(page)
    assert [(r, c) for r, c, _ in problems] == [("2", "deadline"), ("3", "deadline")]
    assert all("DD/MM/YYYY" in m and "2027" in m for _, _, m in problems)


def test_excel_date_cells_stay_dates(importer):
    """A date cell is a date in any locale (no order to guess)."""
    client = importer("en", None)
    row = dict.fromkeys(COLUMNS, "") | {
        "recommendation_code": "R-1",
        "office_code": "SG",
        "action_title": "Row 2",
        "owner_email": "focal.sg@example.test",
    }
    cells = [datetime(2027, 4, 5) if c == "deadline" else row[c] for c in COLUMNS]
    response = _upload(client, _xlsx([cells]), "plan.xlsx")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).text
    assert _problems(page) == []
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post(response.headers["Location"], data={"csrf_token": token})
    with client.application.app_context():
        assert db.session.scalar(sa.select(ActionItem.deadline).where(ActionItem.title == "Row 2")) == date(
            2027, 4, 5
        )


def test_a_background_import_reads_dates_as_its_uploader(importer, app, mail_settings):
    """A file previewed by a job (more rows than the inline limit) keeps the uploader's locale: the
    preview and the apply read 04/05/2027 as 4 May for an en-GB reader."""
    mail_settings(TRACKER_IMPORT_INLINE_ROWS=1)
    client = importer("en", "en-GB")
    response = _upload(client, _rows("04/05/2027", "31/03/2027"), "plan.csv")
    assert response.status_code == 303 and "/import/jobs/" in response.headers["Location"]
    url = response.headers["Location"]
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner", budget=60) == 1
    page = client.get(url).text
    assert _problems(page) == [] and "Import these changes" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(url, data={"csrf_token": token}).status_code == 303
    with app.app_context():
        assert run_pending(datetime.now(UTC), "test-runner", budget=60) == 1
        rows = db.session.execute(sa.select(ActionItem.title, ActionItem.deadline)).all()
    assert {t: d for t, d in rows if t.startswith("Row ")} == {
        "Row 2": date(2027, 5, 4),
        "Row 3": date(2027, 3, 31),
    }


def test_the_command_line_has_no_locale_and_refuses_ambiguous_dates(app, world, tmp_path):
    """Without a locale, 31/03/2027 can only be 31 March; 04/05/2027 is refused, naming the row, the
    column and both readings; 05/05/2027 reads the same either way."""
    path = tmp_path / "plan.csv"
    path.write_text(_rows("31/03/2027", "04/05/2027", "05/05/2027"), encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["tracker", "import", str(path), "--dry-run"])
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("Problem")]
    assert problems == [
        "Problem: row 3, deadline: 04/05/2027 could be April 5, 2027 or May 4, 2027: write it "
        "YYYY-MM-DD (2027-04-05 or 2027-05-04)."
    ]


def test_the_order_comes_from_babel_locale_data():
    assert [date_order(tag) for tag in ("fr", "es", "en_GB", "en", "en_US", "de", "ja", None)] == [
        "dmy",
        "dmy",
        "dmy",
        "mdy",
        "mdy",
        "dmy",
        None,  # year first: no day/month order of its own
        None,
    ]
