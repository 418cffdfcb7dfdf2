"""Test doubles shipped with the package (the local exchange server); excluded from the bento."""
