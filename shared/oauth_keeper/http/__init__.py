"""The HTTP edge: API Gateway HTTP API events in (`requests`), answers out (`responses`). No business rules."""
