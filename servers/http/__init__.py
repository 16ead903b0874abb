"""The HTTP servers: the ASGI app, FastAPI, and the uvicorn / hypercorn / aioquic / granian / Caddy fronts."""
