"""What stands between the network and the models: Host check, token, body limits, errors as JSON.

TorchServe's ShellTorch (an open management API that loaded models from any URL) and Gradio's file-path CVEs
are the lessons: this server has no endpoint that loads a model, fetches a URL or takes a file path; it binds
127.0.0.1 unless told otherwise, and then only with a token; the Host header is checked so that a web page
cannot reach a loopback server through DNS rebinding; uploads are read into memory up to a limit (never
written to disk) and recognised by their content, not their name.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import Request
from fastapi.responses import JSONResponse

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: paths anyone may read: the page's own files, which hold nothing of the models
PUBLIC = ("/", "/conv", "/favicon.ico", "/docs", "/openapi.json")  # the API's schema names no model
PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/")
#: headers on every answer; the page's policy allows only its own scripts (no inline script, no CDN)
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class ApiError(Exception):
    """An answer other than 200: TorchServe's error shape {"code", "type", "message"}."""

    def __init__(self, code: int, kind: str, message: str):
        super().__init__(message)
        self.code, self.kind, self.message = code, kind, message


def error_response(code: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "type": kind, "message": message}, status_code=code, headers=HEADERS)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """'127.0.0.1:8080' → '127.0.0.1'; '[::1]:8080' → '::1'.

    >>> host_of('[::1]:8080'), host_of('localhost:80'), host_of('example.org')
    ('::1', 'localhost', 'example.org')
    """
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class Guard:
    """The checks each request passes before any handler runs."""

    def __init__(self, *, bind: str, token: str | None, allowed_hosts: tuple[str, ...] = ()):
        self.token = token
        self.any_host = bind in ("0.0.0.0", "::")  # every address of the machine: any Host, the token guards
        self.hosts = {h.lower() for h in (*LOOPBACK_NAMES, bind, *allowed_hosts)}

    def check(self, request: Request) -> JSONResponse | None:
        host = host_of(request.headers.get("host", ""))
        if not self.any_host and host not in self.hosts:
            return error_response(421, "MisdirectedRequest",
                                  f"Host '{host}' is not served here (allowed: {', '.join(sorted(self.hosts))}); "
                                  "start the server with --allow-host to add a name")
        path = request.url.path
        if self.token is None or path in PUBLIC or path.startswith(PUBLIC_PREFIXES):
            return None
        given = request.headers.get("authorization", "")
        given = given[7:] if given[:7].lower() == "bearer " else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return error_response(401, "Unauthorized", "a token is needed: send 'Authorization: Bearer TOKEN' "
                                                       "(or ?token=TOKEN); the server printed it when it started")
        return None


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The request body, read into memory up to `max_bytes` (413 beyond) within `timeout` seconds (408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "BadRequest", f"Content-Length '{declared[:40]}' is not a number")
        if int(declared) > max_bytes:
            raise ApiError(413, "PayloadTooLarge", f"the upload is {int(declared):,} bytes; the limit is "
                                                   f"{max_bytes:,} (--max-bytes)")

    async def read() -> bytes:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_bytes:
                raise ApiError(413, "PayloadTooLarge", f"the upload is over the limit of {max_bytes:,} bytes "
                                                       "(--max-bytes)")
        return bytes(buf)

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, "RequestTimeout", f"the upload did not arrive within {timeout:g} s") from None


def image_from_body(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The image's bytes and a name for messages, from a raw body or a multipart form (field 'data', 'body' or
    'file', as TorchServe takes them; else the first part). Parsed in memory: nothing touches the disk."""
    if not body:
        raise ApiError(400, "BadRequest", "the request has no body: send the image's bytes (curl -T IMAGE URL) "
                                          "or a multipart form with a 'data' field")
    if not content_type.lower().startswith("multipart/form-data"):
        return body, "the upload"
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "BadRequest", "a multipart body without a boundary in its Content-Type")
    parts: list[dict] = []
    header = {"field": b"", "value": b""}

    def on_part_begin():
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(d, s, e):
        header["field"] += d[s:e]

    def on_header_value(d, s, e):
        header["value"] += d[s:e]

    def on_header_end():
        parts[-1]["headers"][header["field"].decode("latin-1").lower()] = header["value"].decode("latin-1")
        header["field"], header["value"] = b"", b""

    def on_part_data(d, s, e):
        parts[-1]["data"] += d[s:e]

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own errors for malformed bodies
        raise ApiError(400, "BadRequest", f"a malformed multipart body ({str(e)[:120]})") from None
    from python_multipart.multipart import MultipartState

    if parser.state != MultipartState.END:  # cut short: the last part may be cut too
        raise ApiError(400, "BadRequest", "the multipart body ends before its closing boundary (cut short?)")
    named = []
    for p in parts:
        _, opts = parse_options_header(p["headers"].get("content-disposition", ""))
        named.append((opts.get(b"name", b"").decode("latin-1"), p["data"]))
    for want in ("data", "body", "file"):
        for name, data in named:
            if name == want:
                return bytes(data), f"the form field '{name}'"
    if named:
        return bytes(named[0][1]), f"the form field '{named[0][0]}'"
    raise ApiError(400, "BadRequest", "the multipart form has no parts; put the image in a field named 'data'")
