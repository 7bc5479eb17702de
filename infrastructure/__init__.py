"""Infrastructure: settings, event-store wiring and SQL read models."""
