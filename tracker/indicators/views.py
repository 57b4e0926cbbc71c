"""The indicators blueprint (/indicators): its routes live in one module per part of the feature.

- reporting.py: an office's values for a quarter, a value's page and evidence, review decisions
- pages.py: the list of indicators, an indicator's comparison page, managing indicators and goals
- export.py: the indicator table as CSV or XLSX
- imports.py: measurements imported from CSV or XLSX (preview, then all or nothing)
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("indicators", __name__, url_prefix="/indicators")

# The route modules register on bp when imported (after bp exists).
from tracker.indicators import export, imports, pages, reporting  # noqa: E402, F401
