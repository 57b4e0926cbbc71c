"""The Flask extensions, created unbound; create_app() binds them to an application."""

from typing import Any

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy as _SQLAlchemy
from flask_sqlalchemy.pagination import Pagination
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints, so that migrations can address them on SQLite (batch mode) and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SQLAlchemy(_SQLAlchemy):
    """Flask-SQLAlchemy, with page numbers kept to what a database can offset by."""

    def paginate(self, select: Any, *, page: int | None = None, **kwargs: Any) -> Pagination:
        """A page of ``select`` (see :func:`tracker.params.paginate`); the page number from 1 to 2**31 − 1.

        A number beyond gives an empty page instead of an OFFSET that overflows (SQLite) or is
        refused (PostgreSQL); a number below 1 gives the first page.
        """
        from tracker.params import MAX_INT

        if page is not None:
            page = min(max(page, 1), MAX_INT)
        return super().paginate(select, page=page, **kwargs)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
# Keyed by client address (the real one behind proxies: see TRACKER_PROXIES).
limiter = Limiter(get_remote_address)
