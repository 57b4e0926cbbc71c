"""The REST API (/api/v1): personal tokens, JSON, problem+json errors, an OpenAPI 3.1 document."""
