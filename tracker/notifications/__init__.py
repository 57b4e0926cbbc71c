"""Mail: compose who must be told what into the outbox, then dispatch it over SMTP."""
