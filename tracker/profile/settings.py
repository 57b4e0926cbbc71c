"""One's own language and time zone, chosen on the profile page."""

from __future__ import annotations

from tracker.admin.services import _check_language, _check_timezone
from tracker.models import User


def update_settings(user: User, *, language: str | None, timezone: str | None) -> None:
    """Set the user's own language and time zone (blank: the office's); flushes nothing itself.

    The same checks as an admin's change (admin.services); a refusal raises UserError naming the field.
    """
    user.language = _check_language(language)
    user.timezone = _check_timezone(timezone)
