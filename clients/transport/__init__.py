"""wirebench's own asyncio HTTP transports, connection setup and wire figures."""
