"""Forms of the import: the upload, and the confirmation or cancellation of a previewed file."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SubmitField


class UploadForm(FlaskForm):
    """A CSV or XLSX file to preview before anything is imported."""

    file = FileField(
        _l("File (CSV or XLSX)"), validators=[FileRequired(message=_l("Choose a file to upload."))]
    )
    submit = SubmitField(_l("Upload and preview"))


class ConfirmForm(FlaskForm):
    """Confirms (or cancels) the import of a previewed file: only its CSRF token."""
