"""Helpers for the server tests: a real `cnnkit serve` process, and plain HTTP requests (urllib)."""
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request


class Server:
    """`python -m cnnkit serve ARGS --port 0`; `url` once it said it serves; `stop()` ends it."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnkit", "serve", *args, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        self.lines: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(r"serving .* at (http://\S+?)/(\?token=(\S+))? ", line)
            if m:
                self.url, self.token = m.group(1), m.group(3)
                return
        self.stop()
        raise AssertionError("cnnkit serve did not start:\n" + "".join(self.lines) + self.proc.stderr.read())

    def get(self, path: str, **headers) -> tuple[int, bytes, dict]:
        return request(self.url + path, headers=headers)

    def alive(self) -> bool:
        return self.proc.poll() is None and self.get("/ping")[0] == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def request(url: str, data: bytes | None = None, headers: dict | None = None, method: str | None = None
            ) -> tuple[int, bytes, dict]:
    """(status, body, headers) of one HTTP request; an error status is returned, not raised."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def raw_status(url: str, head: str, body: bytes = b"") -> int:
    """Send a hand-written request (headers as given, then `body`, whatever the server does meanwhile) over a raw
    socket, and return the status of the answer: for refusals that come before the body has been read."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and closed before all was sent
            pass
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
