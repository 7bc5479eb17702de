"""Read-state domain: the Conversation aggregate, its events, rules and errors."""
