"""A TCP proxy between a writer and its database that can fail as networks and servers do:
`cut()` resets every connection through it and refuses new ones; `freeze()` answers nothing
from then on, resetting nothing."""

from __future__ import annotations

import socket
import threading


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = False
        self._frozen = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # cut
            if self._cut:
                client.close()
                return
            if self._frozen.is_set():
                with self._lock:
                    self._sockets.append(client)  # (accepted, never answered)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._frozen.is_set():
                    continue  # (swallowed: a frozen server takes the bytes and never answers)
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self) -> None:
        """From now on nothing gets through, and nothing is reset: every connection stays open,
        new ones are accepted, and no statement is ever answered (a server stopped with SIGSTOP,
        a pooler that hangs)."""
        self._frozen.set()

    def cut(self) -> None:
        self._cut = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # (wakes the accepting thread: close alone does not)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for end in self._sockets:
                try:
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    end.close()  # (linger 0: a reset, as a cut cable looks to the far end)
                except OSError:
                    pass
