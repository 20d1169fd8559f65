"""`openpex serve` as a real process, for end-to-end tests: started on a free port, spoken to
over HTTP with urllib, killed with any signal."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ADMIN_PASSWORD = "admin-password-1"
_UNVERIFIED = ssl._create_unverified_context()  # the tests' own self-signed certificates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *extra: str, port: int | None = None, split_stderr: bool = False) -> None:
        """`split_stderr`: the log (stderr) goes to `self.stderr`, apart from what is printed."""
        self.port = port or free_port()
        self.scheme = "https" if "--tls-cert" in extra else "http"
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log = data_dir / f"serve-{self.port}.log"
        self.stderr = data_dir / f"serve-{self.port}.err" if split_stderr else self.log
        env = {**os.environ, "OPENPEX_ADMIN_PASSWORD": ADMIN_PASSWORD}
        with open(self.log, "w") as log, open(self.stderr, "w") if split_stderr else nullcontext() as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port), *extra],
                stdout=log, stderr=errors or subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/OpenPEX/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not come up:\n{self.log.read_text()}"
                                     f"{self.stderr.read_text() if split_stderr else ''}")
            time.sleep(0.05)

    def request(self, method: str, path: str, body: Any = None, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10, context=_UNVERIFIED if self.scheme == "https" else None) \
                    as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def kill(self, sig: int) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def rfc1123(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)
