"""Network errors as one short human sentence, for logs and health counters.

aiohttp, websockets and the socket layer describe the same failure in very different
ways (``ClientConnectorDNSError(ConnectionKey(host=..., ...), gaierror(-2, ...))``,
``gaierror(-2, 'Name or service not known')``); :func:`describe_error` turns each into
what an operator needs to read: ``cannot resolve api.binance.com``, ``connection refused
by 127.0.0.1:9443``, ``timed out after 10 s``.
"""

from __future__ import annotations

import errno
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

_REFUSED = (
    "Connect call failed"  # asyncio's text for ECONNREFUSED (also inside "Multiple exceptions")
)
_RESET = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_UNREACHABLE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


def describe_error(
    error: BaseException, url: str | None = None, *, timeout_s: float | None = None
) -> str:
    """One short sentence saying what went wrong with a connection or request.

    url: what was being reached (names the host when the error itself does not).
    timeout_s: the timeout in force (a timeout is reported as ``timed out after N s``).
    Unknown errors read ``TypeName: message``.
    """
    host, port = _host_port(url)
    if isinstance(error, aiohttp.ClientConnectorError):
        # the connector knows the host it tried; its OSError says why it failed
        host, port = error.host or host, error.port or port
        if isinstance(error, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate of {host} not trusted: {error.certificate_error}"
        return _describe_os_error(error.os_error, host, port)
    if isinstance(error, TimeoutError):  # asyncio, aiohttp's ServerTimeoutError, socket
        return f"timed out after {timeout_s:g} s" if timeout_s is not None else "timed out"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return f"{_where(host, port)} closed the connection before answering"
    if isinstance(error, aiohttp.ClientPayloadError):
        return f"incomplete response from {_where(host, port)}"
    if isinstance(error, aiohttp.WSServerHandshakeError):  # a websocket upgrade refused
        return f"websocket handshake refused by {_where(host, port)}: HTTP {error.status}"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"HTTP {error.status} {error.message}".rstrip()
    if isinstance(error, InvalidStatus):
        status = error.response.status_code
        return f"websocket handshake refused by {_where(host, port)}: HTTP {status}"
    if isinstance(error, InvalidURI):
        return f"invalid websocket URL {error.uri!r}"
    if isinstance(error, InvalidMessage):
        return f"no valid HTTP answer to the websocket handshake from {_where(host, port)}"
    if isinstance(error, InvalidHandshake):
        return f"websocket handshake with {_where(host, port)} failed: {error}"
    if isinstance(error, ConnectionClosed):
        return _describe_closed(error)
    if isinstance(error, OSError):
        return _describe_os_error(error, host, port)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _describe_os_error(error: OSError, host: str | None, port: int | None) -> str:
    where = _where(host, port)
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}" if host else f"cannot resolve host name ({error.strerror})"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host or 'the server'} not trusted: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS error with {where}: {error.reason or error}"
    if isinstance(error, TimeoutError):
        return f"timed out connecting to {where}"
    if isinstance(error, ConnectionRefusedError) or (
        error.errno is None and _REFUSED in str(error)
    ):
        return f"connection refused by {where}"
    if isinstance(error, ConnectionResetError) or error.errno in _RESET:
        return f"connection reset by {where}"
    if error.errno in _UNREACHABLE:
        return f"{where} unreachable ({error.strerror})"
    text = error.strerror or str(error) or type(error).__name__
    return f"{text} ({where})" if host else text


def _describe_closed(error: ConnectionClosed) -> str:
    close = error.rcvd or error.sent
    if close is None:
        return "connection lost without a close frame"
    reason = f": {close.reason}" if close.reason else ""
    return f"connection closed with code {close.code}{reason}"


def _host_port(url: str | None) -> tuple[str | None, int | None]:
    if not url:
        return None, None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, None
    if port is None:
        port = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    return parts.hostname, port


def _where(host: str | None, port: int | None) -> str:
    if host is None:
        return "the server"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port else host
