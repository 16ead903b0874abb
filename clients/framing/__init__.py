"""Protocol framing without I/O (sans-IO): bytes in, events and decisions out."""
