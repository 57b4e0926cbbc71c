"""Data in and out: spreadsheet import and export, and printable reports."""
