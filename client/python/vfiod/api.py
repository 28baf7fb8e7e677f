"""One Python method per vfiod RPC method (proto/openrpc.json).

``Api`` is a mixin: the class using it provides ``call()`` (see Client).
Methods are named after the RPC methods with ``.`` as ``_``
(``dma.map_fd`` is ``dma_map_fd``); required params are positional, optional
ones keyword-only and left out of the request when None. Each returns the
decoded ``result`` (dicts and lists as the daemon sent them), except the
methods whose reply carries an fd: dma_alloc returns a DmaBuffer and
device_open a DeviceFd, which own that fd. Errors are raised as the
VfiodError subclass of the daemon's error code (see errors.py); the contract
of each method, its errors included, is its entry in the OpenRPC document
(``rpc_discover()``).

Containers, mappings and regions are named by their integer ids (a named
container's id comes from container_attach).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from .buffers import DeviceFd, DmaBuffer
from .connection import NotificationHandler, Reply

#: Receives each "dma.progress" params object while a map runs:
#: ``{"done_bytes": n, "total_bytes": n}``.
ProgressHandler = Callable[[dict[str, Any]], None]
#: An fd to send: an int, or any object with fileno() (a file, an OwnedFd).
FdLike = Any


class _Caller(Protocol):
    def call(self, method: str, params: Any = None, fds: Sequence[int] = (),
             timeout: Any = ..., on_notification: NotificationHandler | None
             = None) -> Reply: ...


def _fileno(fd: FdLike) -> int:
    return fd if isinstance(fd, int) else int(fd.fileno())


def _params(**given: Any) -> dict[str, Any]:
    """The params object: every argument that is not None."""
    return {key: value for key, value in given.items() if value is not None}


class Api:
    """The typed RPC methods; see the module docstring for the conventions."""

    # -- the daemon ---------------------------------------------------------

    def rpc_discover(self: _Caller) -> dict[str, Any]:
        """The OpenRPC document describing every method."""
        return self.call("rpc.discover").result

    def ping(self: _Caller) -> dict[str, Any]:
        """Liveness; never blocks. Returns ``{}``."""
        return self.call("ping").result

    def version(self: _Caller) -> dict[str, Any]:
        """``{"version": str, "api": int}``."""
        return self.call("version").result

    def status(self: _Caller) -> dict[str, Any]:
        """Daemon status (root: totals; others: their own figures)."""
        return self.call("status").result

    def stats(self: _Caller) -> dict[str, Any]:
        """Request counters and map/unmap figures (root: the daemon's)."""
        return self.call("stats").result

    def metrics(self: _Caller) -> str:
        """status and stats in the Prometheus text format 0.0.4 (root: the
        daemon's figures; anyone else: its own uid's)."""
        return str(self.call("metrics").result["text"])

    def session_info(self: _Caller) -> dict[str, Any]:
        """``{"session", "token", "resumable"}`` of this connection."""
        return self.call("session.info").result

    def session_resume(self: _Caller, token: str) -> dict[str, Any]:
        """Takes back a session's unnamed objects after a restart of vfiod:
        ``{"containers": n, "mappings": n}``. InvalidParamsError for a
        malformed token, NotFoundError when nothing is kept for it."""
        return self.call("session.resume", {"token": token}).result

    def daemon_restart(self: _Caller) -> dict[str, Any]:
        """Root only: hand everything over to a new vfiod through the fd
        store (BusyError without a store)."""
        return self.call("daemon.restart").result

    # -- devices ------------------------------------------------------------

    def device_list(self: _Caller) -> list[dict[str, Any]]:
        """PCI devices and whether the caller may use them."""
        return self.call("device.list").result

    def device_info(self: _Caller, bdf: str) -> dict[str, Any]:
        """One device in detail (sysfs, config space, VFIO regions/irqs)."""
        return self.call("device.info", {"bdf": bdf}).result

    def device_bind(self: _Caller, bdf: str) -> dict[str, Any]:
        """Binds the device to vfio-pci (may_bind or root)."""
        return self.call("device.bind", {"bdf": bdf}).result

    def device_unbind(self: _Caller, bdf: str) -> dict[str, Any]:
        """Unbinds the device from vfio-pci (may_bind or root)."""
        return self.call("device.unbind", {"bdf": bdf}).result

    def device_reset(self: _Caller, bdf: str) -> dict[str, Any]:
        """Resets the device; ``result["method"]`` is "function" or "hot"."""
        return self.call("device.reset", {"bdf": bdf}).result

    def device_open(self: _Caller, container: int, bdf: str) -> DeviceFd:
        """A VFIO device fd for a device whose group is in ``container``.
        The returned DeviceFd owns the fd."""
        reply = self.call("device.open", {"container": container, "bdf": bdf})
        result = reply.result
        return DeviceFd(reply.take_fd(result["fd"]["fd"]), bdf=result["bdf"],
                        num_regions=result["num_regions"],
                        num_irqs=result["num_irqs"], flags=result["flags"],
                        info=result)

    # -- containers -----------------------------------------------------------

    def container_create(self: _Caller, devices: Sequence[str], *,
                         name: str | None = None,
                         share_with: dict[str, list[int | str]] | None = None
                         ) -> dict[str, Any]:
        """A type1v2 container holding the devices' groups, owned by the
        caller; unnamed ones live as long as this connection. ``share_with``
        is ``{"users": [...], "groups": [...]}``."""
        return self.call("container.create", _params(
            devices=list(devices), name=name, share_with=share_with)).result

    def container_attach(self: _Caller, name: str, *,
                         owner: int | str | None = None) -> dict[str, Any]:
        """A named container of the caller (or of ``owner``, shared)."""
        return self.call("container.attach",
                         _params(name=name, owner=owner)).result

    def container_share(self: _Caller, container: int, *,
                        users: Sequence[int | str] | None = None,
                        groups: Sequence[int | str] | None = None
                        ) -> dict[str, Any]:
        """Lets more users or groups use the container (owner or root)."""
        return self.call("container.share", _params(
            container=container, users=_list(users),
            groups=_list(groups))).result

    def container_unshare(self: _Caller, container: int, *,
                          users: Sequence[int | str] | None = None,
                          groups: Sequence[int | str] | None = None
                          ) -> dict[str, Any]:
        """Stops sharing the container with those users or groups."""
        return self.call("container.unshare", _params(
            container=container, users=_list(users),
            groups=_list(groups))).result

    def container_list(self: _Caller) -> list[dict[str, Any]]:
        """The caller's containers and those shared with it (root: all)."""
        return self.call("container.list").result

    def container_info(self: _Caller, container: int) -> dict[str, Any]:
        """A container and its mappings."""
        return self.call("container.info", {"container": container}).result

    def container_destroy(self: _Caller, container: int) -> dict[str, Any]:
        """Unmaps everything, detaches the groups, closes the container:
        ``{"unmapped_bytes": n}``."""
        return self.call("container.destroy",
                         {"container": container}).result

    # -- DMA ----------------------------------------------------------------

    def dma_alloc(self: _Caller, container: int, size: int, backing: str, *,
                  iova: int | None = None, max_iova: int | None = None,
                  dma_mask_bits: int | None = None,
                  numa_node: int | None = None, name: str | None = None,
                  require: str | None = None,
                  progress: ProgressHandler | None = None,
                  timeout: Any = None) -> DmaBuffer:
        """Memory allocated by vfiod (``backing``: "4k", "thp", "hugetlb-2m",
        "hugetlb-1g"), mapped for DMA; the DmaBuffer owns its memfd.
        ``progress`` receives dma.progress notifications. ``timeout``
        (seconds) defaults to none: a map takes as long as it takes."""
        params = _params(container=container, size=size, backing=backing,
                         iova=iova, max_iova=max_iova,
                         dma_mask_bits=dma_mask_bits, numa_node=numa_node,
                         name=name, require=require,
                         progress=True if progress else None)
        reply = self.call("dma.alloc", params, timeout=timeout,
                          on_notification=_progress_to(
                              progress, _handler_of(self)))
        result = reply.result
        return DmaBuffer(reply.take_fd(result["fd"]["fd"]),
                         mapping=result["mapping"], iova=result["iova"],
                         size=result["size"], backing=result["backing"],
                         info=result)

    def dma_map_fd(self: _Caller, container: int, fd: FdLike | None = None,
                   *, region: int | None = None, offset: int | None = None,
                   size: int | None = None, iova: int | None = None,
                   max_iova: int | None = None,
                   dma_mask_bits: int | None = None,
                   segments: Sequence[dict[str, int]] | None = None,
                   name: str | None = None, require: str | None = None,
                   progress: ProgressHandler | None = None,
                   timeout: Any = None) -> dict[str, Any]:
        """Maps the caller's memfd / tmpfs / hugetlbfs file ``fd`` (sent with
        the request, not closed here) or a slice of a registered ``region``
        (exactly one of them). Returns the result: mapping, iova, size,
        segments, chunks, ioctls (and huge with ``require``)."""
        fds = [] if fd is None else [_fileno(fd)]
        params = _params(container=container,
                         fd={"fd": 0} if fds else None, region=region,
                         offset=offset, size=size, iova=iova,
                         max_iova=max_iova, dma_mask_bits=dma_mask_bits,
                         segments=_list(segments), name=name,
                         require=require,
                         progress=True if progress else None)
        return self.call("dma.map_fd", params, fds, timeout=timeout,
                         on_notification=_progress_to(
                             progress, _handler_of(self))).result

    def dma_map_bar(self: _Caller, container: int, bdf: str, bar: int, *,
                    iova: int | None = None, max_iova: int | None = None,
                    name: str | None = None) -> dict[str, Any]:
        """Maps a device BAR into the container for peer-to-peer DMA."""
        return self.call("dma.map_bar", _params(
            container=container, bdf=bdf, bar=bar, iova=iova,
            max_iova=max_iova, name=name)).result

    def dma_list(self: _Caller, container: int | None = None
                 ) -> list[dict[str, Any]]:
        """The caller's mappings (in one container when given)."""
        return self.call("dma.list", _params(container=container)).result

    def dma_info(self: _Caller, mapping: int) -> dict[str, Any]:
        """One mapping with its contiguity report (``contiguity``: state
        "known"/"unknown", runs, histogram, folios)."""
        return self.call("dma.info", {"mapping": mapping}).result

    def dma_free(self: _Caller, mapping: int) -> dict[str, Any]:
        """Unmaps and releases a mapping: ``{"unmapped_bytes": n}``."""
        return self.call("dma.free", {"mapping": mapping}).result

    def dma_register(self: _Caller, fd: FdLike, *, offset: int | None = None,
                     size: int | None = None) -> dict[str, Any]:
        """Registers a memfd / hugetlbfs file (sent, not closed here) as a
        region of this connection, to map slices with dma_map_fd(region=)."""
        return self.call("dma.register", _params(
            fd={"fd": 0}, offset=offset, size=size), [_fileno(fd)]).result

    def dma_unregister(self: _Caller, region: int) -> dict[str, Any]:
        """Drops this connection's handle on a region."""
        return self.call("dma.unregister", {"region": region}).result

    def dma_regions(self: _Caller) -> list[dict[str, Any]]:
        """The regions this connection registered."""
        return self.call("dma.regions").result


def _handler_of(caller: Any) -> NotificationHandler | None:
    """The caller's own notification handler, if it has one."""
    return getattr(caller, "on_notification", None)


def _list(items: Sequence[Any] | None) -> list[Any] | None:
    return None if items is None else list(items)


def _progress_to(handler: ProgressHandler | None,
                 others: NotificationHandler | None
                 ) -> NotificationHandler | None:
    """A notification handler feeding dma.progress params to ``handler`` and
    any other notification to ``others`` (the client's own handler)."""
    if handler is None:
        return None

    def on_notification(method: str, params: Any) -> None:
        if method == "dma.progress" and isinstance(params, dict):
            handler(params)
        elif others is not None:
            others(method, params)
    return on_notification
