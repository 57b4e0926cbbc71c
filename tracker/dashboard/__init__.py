"""The dashboard: totals, progress per office, the recommendation × office matrix, overdue items."""
