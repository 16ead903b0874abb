"""WebSocket clients: request/response messages and token streams."""
