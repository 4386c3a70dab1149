"""The session service: stack-based multi-turn context in Redis."""
