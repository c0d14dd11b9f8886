"""Test doubles that behave like the real services (for tests and for trying basewatch by hand without an account)."""
