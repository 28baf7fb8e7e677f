"""Release notices: vfiod's word that the kernel wants a device back.

When a device is unbound from vfio-pci (or hot-unplugged) while vfiod holds
it, every connection with a stake in the container holding it receives a
``device.release_requested`` notification and, after the daemon's grace
period (config ``device.release_grace_seconds``), ``device.revoked``: the
container was destroyed, its DMA unmapped. The kernel's unbind waits until
every fd of the device is closed: close the DeviceFd (and unmap its BARs) on
the request. Notifications reach ``Client.on_notification`` during calls;
``parse_release_notice`` reads them (see proto/openrpc.json,
DeviceReleaseRequested and DeviceRevoked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REQUESTED = "device.release_requested"
REVOKED = "device.revoked"


@dataclass
class ReleaseNotice:
    """One release notice; ``revoked`` False for a request."""
    revoked: bool
    bdf: str
    container: int
    grace_ms: int = 0
    unmapped_bytes: int = 0
    mappings: list[int] = field(default_factory=list)
    reason: str = ""


def _uint(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_release_notice(method: str, params: Any) -> ReleaseNotice | None:
    """The notice a notification carries; None for another method or
    params of the wrong shape."""
    if method not in (REQUESTED, REVOKED) or not isinstance(params, dict):
        return None
    bdf = params.get("bdf")
    container = _uint(params.get("container"))
    if not isinstance(bdf, str) or container is None:
        return None
    mappings = params.get("mappings")
    reason = params.get("reason")
    return ReleaseNotice(
        revoked=method == REVOKED, bdf=bdf, container=container,
        grace_ms=_uint(params.get("grace_ms")) or 0,
        unmapped_bytes=_uint(params.get("unmapped_bytes")) or 0,
        mappings=[m for m in mappings if _uint(m) is not None]
        if isinstance(mappings, list) else [],
        reason=reason if isinstance(reason, str) else "")
