"""vfiod: a Python client for the vfiod VFIO daemon (standard library only).

The daemon speaks JSON-RPC 2.0 over a unix socket, one JSON value per line,
and passes device fds and DMA memfds with SCM_RIGHTS. This package wraps it:

* Client: a connection (context manager) with one method per RPC method
  (``dma.map_fd`` is ``Client.dma_map_fd``), the generic ``call``/``batch``/
  ``notify``, and ``keep_session`` (reconnect + session.resume after a
  restart of vfiod, as the C++ client's KeepSession).
* DmaBuffer / DeviceFd: what dma.alloc / device.open hand over, each owning
  its fd; DmaBuffer.mmap() maps the memory into this process.
* parse_release_notice: reads device.release_requested / device.revoked
  (the kernel wants a device back: close its DeviceFd).
* errors: one exception class per stable error code, all VfiodError, with
  ``code``, ``kind``, ``errno``, ``errno_name``, ``detail``.

Example::

    import os, vfiod
    with vfiod.Client() as c:
        container = c.container_create(["0000:00:03.0"])["container"]
        fd = os.memfd_create("buf", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 2 << 20)
        m = c.dma_map_fd(container, fd)
        print(hex(m["iova"]), c.dma_info(m["mapping"])["contiguity"])
"""

from .buffers import DeviceFd, DmaBuffer, OwnedFd, map_shared
from .client import (DEFAULT_SOCKET, RETRIED_AFTER_RECONNECT, USE_DEFAULT,
                     Client, default_socket)
from .connection import DEFAULT_TIMEOUT, BatchCall, Connection, Reply
from .errors import (BusyError, CallTimeoutError, CancelledError,
                     ConflictError, FdError, FrameTooLargeError,
                     InternalError, InvalidParamsError, InvalidRequestError,
                     KernelError, MethodNotFoundError, NotFoundError,
                     ParseError, PermissionDeniedError, ProtocolError,
                     QuotaExceededError, ShuttingDownError, TransportError,
                     VfiodError)
from .release import ReleaseNotice, parse_release_notice

__all__ = [
    "BatchCall", "BusyError", "CallTimeoutError", "CancelledError", "Client",
    "ConflictError", "Connection", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT",
    "DeviceFd", "DmaBuffer", "FdError", "FrameTooLargeError", "InternalError",
    "InvalidParamsError", "InvalidRequestError", "KernelError",
    "MethodNotFoundError", "NotFoundError", "OwnedFd", "ParseError",
    "PermissionDeniedError", "ProtocolError", "QuotaExceededError",
    "RETRIED_AFTER_RECONNECT", "ReleaseNotice", "Reply", "ShuttingDownError",
    "TransportError", "USE_DEFAULT", "VfiodError", "default_socket",
    "map_shared", "parse_release_notice",
]
