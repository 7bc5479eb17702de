"""Application layer: commands, queries and projections over the event store."""
