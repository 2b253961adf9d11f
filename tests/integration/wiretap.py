"""A raw TCP proxy that records the bytes on the wire: the secure-mode tests' tap.

It listens on a loopback port (free, or the one given) of ``127.0.0.1`` or of
another loopback address (all of ``127.0.0.0/8`` is loopback on Linux), relays
each connection to ``127.0.0.1:upstream`` both ways in threads, and keeps a
copy of every byte and of each client's first bytes (a TLS handshake starts
with ``0x16``).
"""

from __future__ import annotations

import socket
import threading

__all__ = ["WireTap"]


class WireTap:
    """Relays ``host:port`` to ``127.0.0.1:upstream``, keeping every byte."""

    def __init__(self, upstream: int, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self.openings: list[bytes] = []  # the first bytes each client sent
        self._bytes = bytearray()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def captured(self) -> bytes:
        """Every byte relayed so far, both ways."""
        with self._lock:
            return bytes(self._bytes)

    def clear(self) -> None:
        """Forget what was captured."""
        with self._lock:
            self._bytes.clear()
            self.openings.clear()

    def close(self) -> None:
        """Stop accepting (connections in flight end with their peers)."""
        self._closed.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            for src, dst, opening in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, opening), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, opening: bool) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self._bytes += data
                    if opening:
                        self.openings.append(data[:8])
                        opening = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
