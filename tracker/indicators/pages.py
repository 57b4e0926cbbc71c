"""Placeholder: routes of this part are added by its own change."""
