"""No page scrolls sideways, on a 375-px phone or in a 1280-px window, whatever the data.

Every main page (the lists of tests/browser/test_accessibility.py and tests/test_html_valid.py, plus
the error pages) is opened at both widths, in two states of the programme:

- ``empty``: twelve offices, most with no action, so the dashboard and report matrices hold many
  empty cells (whose hidden "No actions" text once escaped `.table-wrap` and widened the page);
- ``full``: every cell of the matrix holds actions, with long office names and codes, long
  recommendation codes and titles (one unbroken word among them) and a cell of 120 actions.

On each, ``document.documentElement.scrollWidth`` and ``document.body.scrollWidth`` must not exceed
``window.innerWidth``: wide tables scroll inside their own wrapper, never the page. One browser, one
context per role and width, reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from flask import Flask

from tests import test_html_valid as html_valid
from tests.browser import test_accessibility as a11y
from tests.conftest import PASSWORD, PASSWORD_HASH, World
from tracker.extensions import db
from tracker.models import ActionItem, Office, Recommendation, Source, User

pages_data = a11y.pages_data  # the fixtures the page lists are written for
more_data = html_valid.more_data

PHONE = a11y.PHONE
WINDOW = {"viewport": {"width": 1280, "height": 800}}
WIDTHS = {"375px": PHONE, "1280px": WINDOW}

# Ten more offices: with SG and MY, the twelve of the programme (a matrix wider than 1280 px).
OFFICES = [
    ("BN", "Brunei Darussalam"),
    ("KH", "Cambodia"),
    ("ID", "Indonesia"),
    ("MN", "Mongolia"),
    ("PH", "Philippines"),
    ("LA", "Lao PDR"),
    ("TH", "Thailand"),
    ("VN", "Viet Nam"),
    ("LK", "Sri Lanka"),
    ("BD", "Bangladesh"),
]
LONG_WORD = "Interoperabilitätsverbesserungsprogrammdurchführungsverordnung"


@dataclass(frozen=True)
class Page:
    """A page to measure: who opens it, where, what they do first, and the HTTP status expected."""

    name: str
    role: str | None
    path: str
    prepare: object = None
    status: int = 200


def every_page() -> list[Page]:
    """The browser test's main pages, the HTML test's extra pages, and the error pages."""
    pages = [Page(p.name, p.role, p.path, p.prepare) for p in a11y.MAIN_PAGES]
    pages += [Page(p.name, p.role, p.path, status=p.status) for p in html_valid.EXTRA_PAGES]
    pages += [
        Page("forbidden", "focal_sg", "/admin/users", status=403),
        Page("not-found-signed-out", None, "/nothing-here", status=404),
    ]
    return pages


# The pages where the matrix or long names show: what the ``full`` state is measured on.
FULL_STATE_PAGES = {
    "dashboard",
    "dashboard-manager",
    "report-programme",
    "report-office",
    "recommendations",
    "recommendation",
    "offices",
    "office",
    "office-focal",
    "actions",
    "actions-focal",
    "my-actions",
    "admin-offices",
    "users",
    "verification",
}


def _add_offices(world: World, long_names: bool) -> list[Office]:
    """The ten other offices, each with a focal point (long names and 8-letter codes if asked)."""
    offices = []
    for n, (code, country) in enumerate(OFFICES):
        if long_names:
            code = (code + "IPOFFICE")[:8]
            name = f"Directorate General of Intellectual Property Rights of {country}, {LONG_WORD}"
        else:
            name = f"IP Office of {country}"
        office = Office(code=code, name=name, country=country, timezone="UTC")
        focal = User(
            email=f"focal{n}@example.test",
            name=f"Focal point of the {name}" if long_names else f"Focal {code}",
            role="focal_point",
            office=office,
        )
        focal.password_hash = PASSWORD_HASH
        db.session.add_all([office, focal])
        offices.append(office)
    return offices


@pytest.fixture
def empty_cells(app: Flask, world: World, more_data: dict) -> dict:
    """Twelve offices, ten of them without actions: most matrix cells are empty."""
    with app.app_context():
        _add_offices(world, long_names=False)
        db.session.commit()
    return more_data


@pytest.fixture
def full_cells(app: Flask, world: World, more_data: dict) -> dict:
    """Twelve offices with long names; every recommendation has actions in every office, one cell
    holds 120; long recommendation codes and titles."""
    today = date.today()
    with app.app_context():
        offices = _add_offices(world, long_names=True)
        offices += [db.session.get(Office, world.offices[code]) for code in ("SG", "MY")]
        source = db.session.get(Source, world.source_id)
        recs = list(db.session.query(Recommendation).all())
        recs.append(
            rec := Recommendation(
                source=source,
                code="R-2027-DIGITAL-TRANSFORMATION-01",
                title="Modernise the filing, examination and registration systems so that every "
                f"application can be filed, paid for and followed online ({LONG_WORD})",
                text="Text",
                theme="Digital",
            )
        )
        db.session.add(rec)
        for rec in recs:
            for office in offices:
                owner = office.users[0] if office.users else None
                db.session.add(
                    ActionItem(
                        recommendation=rec,
                        office=office,
                        title=f"Carry out {rec.code} in {office.code}",
                        owner=owner,
                        deadline=today - timedelta(days=30),
                        status="in_progress",
                        progress=50,
                    )
                )
        first = offices[0]
        db.session.add_all(
            ActionItem(
                recommendation=recs[-1],
                office=first,
                title=f"Step {n} of the programme",
                owner=first.users[0],
                deadline=today + timedelta(days=n),
                status=("not_started", "in_progress", "blocked", "verified")[n % 4],
                progress=(0, 40, 10, 100)[n % 4],
            )
            for n in range(120)
        )
        db.session.commit()
    return more_data


@pytest.fixture
def visitor(browser, live_server, world: World) -> Iterator[Callable[..., object]]:
    """Factory: a page signed in as a role, one browser context per role and width, reused."""
    contexts: dict[tuple[str | None, str], object] = {}

    def page_for(role: str | None, **options) -> object:
        key = (role, repr(sorted(options.items())))
        if key not in contexts:
            # A role signed in at one width lends its cookies to the other: one sign-in per role.
            signed_in = next((t for (r, _), t in contexts.items() if r == role and role), None)
            state = signed_in.context.storage_state() if signed_in else None
            context = browser.new_context(base_url=live_server, storage_state=state, **options)
            tab = context.new_page()
            tab.set_default_timeout(10_000)
            if role and not signed_in:
                tab.goto("/auth/login")
                tab.get_by_label("Email").fill(world.users[role])
                tab.get_by_label("Password", exact=True).fill(PASSWORD)
                tab.get_by_role("button", name="Sign in").click()
                tab.wait_for_url(lambda url: "/auth/login" not in url)
            contexts[key] = tab
        return contexts[key]

    yield page_for
    for tab in contexts.values():
        tab.context.close()


WIDTH_JS = """
() => ({
  inner: window.innerWidth,
  html: document.documentElement.scrollWidth,
  body: document.body.scrollWidth,
  // what sticks out (outside any scrolling wrapper), to say why
  wide: [...document.querySelectorAll('body *')].filter((el) => {
    const r = el.getBoundingClientRect();
    return r.right > window.innerWidth + 1 || r.left < -1;
  }).filter((el) => !el.matches('.skip-link')
    && (!el.parentElement.closest('.table-wrap') || /absolute|fixed/.test(getComputedStyle(el).position)))
    .slice(0, 4).map((el) => el.outerHTML.slice(0, 120)),
})
"""


def _open(visitor, page: Page, ids: dict, options: dict):
    """Open one page as its role at this width and do its first step; None on an unexpected status."""
    tab = visitor(page.role, **options)
    response = tab.goto(page.path.format(**ids))
    if response is None or response.status != page.status:
        return None
    if page.prepare:
        page.prepare(tab, ids)
    return tab


# A first step that can be taken only once (a second factor is enrolled once): the page is measured
# at the other widths by resizing the tab it was opened in.
ONCE = {"recovery-codes"}


def _measure(tab, width: str, page: Page) -> str | None:
    size = tab.evaluate(WIDTH_JS)
    # With phone emulation the window may zoom out to show what overflows: compare with the screen.
    limit = min(size["inner"], WIDTHS[width]["viewport"]["width"])
    if size["html"] > limit or size["body"] > limit:
        return (
            f"{width} {page.name}: the page is {size['html']}px wide (body {size['body']}px) "
            f"on a {limit}px screen; sticking out: {size['wide']}"
        )
    return None


def _too_wide(visitor, pages: list[Page], ids: dict) -> list[str]:
    """Open every page at each width; what is wider than the screen, and why."""
    problems: list[str | None] = []
    for page in pages:
        first = None
        for width, options in WIDTHS.items():
            if page.name in ONCE and first is not None:
                own = first.viewport_size
                first.set_viewport_size(options["viewport"])
                problems.append(_measure(first, width, page))
                first.set_viewport_size(own)
                continue
            tab = _open(visitor, page, ids, options)
            if tab is None:
                problems.append(f"{width} {page.name}: not HTTP {page.status}")
                continue
            first = first or tab
            problems.append(_measure(tab, width, page))
    return [p for p in problems if p]


def test_no_page_scrolls_sideways_with_empty_cells(visitor, empty_cells):
    """Every page at 375 and 1280 px, with a matrix of mostly empty cells."""
    pages = every_page()
    problems = _too_wide(visitor, pages, empty_cells)
    assert not problems, "\n".join(problems)
    tab = visitor("reviewer", **WINDOW)
    tab.goto("/dashboard")
    # The twelve offices make the matrix wider than the window: its own wrapper scrolls.
    wrap = tab.evaluate(
        "(() => { const w = document.querySelector('table.matrix').closest('.table-wrap');"
        " return [w.scrollWidth, w.clientWidth]; })()"
    )
    assert wrap[0] > wrap[1], f"the matrix fits the window ({wrap}): the test does not test"
    assert tab.locator("td.cell-empty").count() >= 20


def test_no_page_scrolls_sideways_with_full_cells(visitor, full_cells):
    """The pages with the matrix and long names, at 375 and 1280 px, every cell full."""
    pages = [p for p in every_page() if p.name in FULL_STATE_PAGES]
    assert len(pages) == len(FULL_STATE_PAGES), "a page of FULL_STATE_PAGES is not in the lists"
    problems = _too_wide(visitor, pages, full_cells)
    assert not problems, "\n".join(problems)
    tab = visitor("reviewer", **WINDOW)
    tab.goto("/dashboard")
    assert tab.locator("td.cell-empty").count() == 0
    assert tab.get_by_text(re.compile(r"^\s*1[23]\d actions\s*$")).count() >= 1
