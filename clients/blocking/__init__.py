"""Blocking HTTP/1.1 and /2 clients: one user on one connection, no event loop."""
