"""uvicorn with a header-read timeout: a client must finish a request's head in time.

uvicorn (httptools) times only the idle gap between requests (`timeout_keep_alive`);
a connection that opens and then trickles, or never sends, its request head is held
as long as it likes, so 1,000 slowloris connections were all held. This protocol arms
a timer when a connection opens and when a request's first byte arrives, and cancels
it when the head is complete; past it the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """An HttpToolsProtocol class whose request heads must arrive within `seconds`."""

    class HeaderTimedProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._head_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _head_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimedProtocol
