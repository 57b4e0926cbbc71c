"""Office pages and action plans: each office's actions by recommendation, agreed and reassigned."""
