"""Typed exceptions for vfiod's JSON-RPC error objects.

Every error the daemon sends is ``{"code": c, "message": m, "data": d}`` where
``d``, when present, is ``{"errno": n, "errno_name": "EINVAL", "detail": "..."}``
(``errno``/``errno_name`` only when an errno caused the failure; ``limit``
names the config key ``limits.<limit>`` when a limit decided a Busy error).
The codes are stable (proto/errors.h); each has one exception class here, and
``VfiodError.kind`` is its name as proto/openrpc.json's ``components.errors``
spells it (``"InvalidParams"``, ``"Kernel"``, ``"NotFound"``, ...).

The last three classes are raised by the client itself and never sent by the
daemon: TransportError (connect/send/receive failed; ``errno`` says why),
CallTimeoutError and ProtocolError (the daemon sent something unreadable).
"""

from __future__ import annotations

import errno as _errno
from typing import Any

# Codes defined by JSON-RPC 2.0.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# vfiod's server codes (-32000..-32099).
KERNEL_ERROR = -32001
PERMISSION_DENIED = -32002
NOT_FOUND = -32003
QUOTA_EXCEEDED = -32004
BUSY = -32005
FRAME_TOO_LARGE = -32006
FD_ERROR = -32007
CANCELLED = -32008
CONFLICT = -32009
SHUTTING_DOWN = -32010
# Reported by client libraries locally; never sent by the daemon.
CLIENT_TRANSPORT = -32090
CLIENT_TIMEOUT = -32091
CLIENT_PROTOCOL = -32092


class VfiodError(Exception):
    """A failed call: the JSON-RPC error object, decoded.

    Attributes: ``code`` (int, stable), ``message`` (the daemon's text),
    ``data`` (the raw ``data`` member or None), ``kind`` (the class's error
    kind), and from ``data``: ``errno`` / ``errno_name`` (None unless an errno
    caused it), ``detail`` ("" when absent), ``limit`` (None unless a limit
    decided). ``method`` is the RPC method that failed, when known.
    """

    code: int = 0
    kind: str = "Server"

    def __init__(self, code: int, message: str, data: Any = None,
                 method: str | None = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        self.method = method
        fields = data if isinstance(data, dict) else {}
        raw_errno = fields.get("errno")
        self.errno: int | None = raw_errno if isinstance(raw_errno, int) else None
        self.errno_name: str | None = fields.get("errno_name")
        self.detail: str = str(fields.get("detail", ""))
        self.limit: str | None = fields.get("limit")
        super().__init__(self.describe())

    def describe(self) -> str:
        """``"method: message (code): detail [ERRNO]"``, for logs and CLIs."""
        text = f"{self.message} ({self.code})"
        if self.method:
            text = f"{self.method}: {text}"
        if self.detail:
            text += f": {self.detail}"
        if self.errno_name:
            text += f" [{self.errno_name}]"
        return text


class ParseError(VfiodError):
    """The line sent was not valid JSON (-32700)."""
    code, kind = PARSE_ERROR, "Parse"


class InvalidRequestError(VfiodError):
    """Valid JSON but not a valid request object (-32600)."""
    code, kind = INVALID_REQUEST, "InvalidRequest"


class MethodNotFoundError(VfiodError):
    """No method of that name (-32601)."""
    code, kind = METHOD_NOT_FOUND, "MethodNotFound"


class InvalidParamsError(VfiodError):
    """A missing or mistyped param, an unaligned or overflowing size (-32602).
    ``detail`` starts with the JSON path of the param at fault."""
    code, kind = INVALID_PARAMS, "InvalidParams"


class InternalError(VfiodError):
    """A bug or an unexpected failure in the daemon (-32603)."""
    code, kind = INTERNAL_ERROR, "Internal"


class KernelError(VfiodError):
    """A syscall or ioctl failed (-32001); ``errno`` says which."""
    code, kind = KERNEL_ERROR, "Kernel"


class PermissionDeniedError(VfiodError):
    """The policy does not allow this caller (-32002)."""
    code, kind = PERMISSION_DENIED, "Permission"


class NotFoundError(VfiodError):
    """No such device, container, mapping, region or session visible to the
    caller (-32003)."""
    code, kind = NOT_FOUND, "NotFound"


class QuotaExceededError(VfiodError):
    """The caller's locked-bytes, mappings or containers quota is used up
    (-32004)."""
    code, kind = QUOTA_EXCEEDED, "Quota"


class BusyError(VfiodError):
    """Resource busy or a limit reached (-32005); ``limit`` names the config
    key when a limit decided."""
    code, kind = BUSY, "Busy"


class FrameTooLargeError(VfiodError):
    """A request line exceeded the daemon's max_frame_bytes (-32006); the
    daemon closes the connection after it."""
    code, kind = FRAME_TOO_LARGE, "FrameTooLarge"


class FdError(VfiodError):
    """Fd passing failed: missing, surplus, truncated, wrong kind (-32007)."""
    code, kind = FD_ERROR, "Fd"


class CancelledError(VfiodError):
    """The request was cancelled (the connection is closing) (-32008)."""
    code, kind = CANCELLED, "Cancelled"


class ConflictError(VfiodError):
    """The request conflicts with existing state (-32009)."""
    code, kind = CONFLICT, "Conflict"


class ShuttingDownError(VfiodError):
    """The daemon is stopping and takes no new work (-32010)."""
    code, kind = SHUTTING_DOWN, "ShuttingDown"


class TransportError(VfiodError):
    """Local: connect, send or receive failed (-32090); ``errno`` says why.
    The connection is unusable afterwards (Client.keep_session reconnects)."""
    code, kind = CLIENT_TRANSPORT, "Transport"


class CallTimeoutError(VfiodError):
    """Local: no reply within the call's timeout (-32091). A reply that comes
    later is dropped; the connection stays usable unless a request was only
    partly sent."""
    code, kind = CLIENT_TIMEOUT, "Timeout"


class ProtocolError(VfiodError):
    """Local: the daemon sent something this client cannot read (-32092)."""
    code, kind = CLIENT_PROTOCOL, "Protocol"


_BY_CODE: dict[int, type[VfiodError]] = {
    cls.code: cls for cls in (
        ParseError, InvalidRequestError, MethodNotFoundError,
        InvalidParamsError, InternalError, KernelError, PermissionDeniedError,
        NotFoundError, QuotaExceededError, BusyError, FrameTooLargeError,
        FdError, CancelledError, ConflictError, ShuttingDownError,
        TransportError, CallTimeoutError, ProtocolError)
}


def error_class(code: int) -> type[VfiodError]:
    """The exception class for ``code`` (VfiodError for unknown codes)."""
    return _BY_CODE.get(code, VfiodError)


def from_error_object(obj: Any, method: str | None = None) -> VfiodError:
    """The exception for a JSON-RPC error object. A malformed object (not
    ``{"code": int, "message": str, ...}``) gives a ProtocolError."""
    if (not isinstance(obj, dict) or not isinstance(obj.get("code"), int)
            or not isinstance(obj.get("message"), str)):
        return protocol_error(f"malformed error object {obj!r:.200}", method)
    code = obj["code"]
    return error_class(code)(code, obj["message"], obj.get("data"), method)


def transport_error(op: str, err: int, method: str | None = None,
                    detail: str = "") -> TransportError:
    """A TransportError for errno ``err`` from operation ``op``."""
    text = f"{op}: {detail}" if detail else op
    name = _errno.errorcode.get(err, f"E?{err}")
    data = {"errno": err, "errno_name": name, "detail": text}
    return TransportError(CLIENT_TRANSPORT, "Transport error", data, method)


def timeout_error(detail: str, method: str | None = None) -> CallTimeoutError:
    """A CallTimeoutError saying what was being waited for."""
    return CallTimeoutError(CLIENT_TIMEOUT, "Timeout", {"detail": detail},
                            method)


def protocol_error(detail: str, method: str | None = None) -> ProtocolError:
    """A ProtocolError saying what could not be read."""
    return ProtocolError(CLIENT_PROTOCOL, "Protocol error",
                         {"detail": detail}, method)
