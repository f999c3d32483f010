"""Errors of edge provisioning, for the API to translate.

::

    ProvisioningError
     ├── ProvisioningDisabled   the hub has no broker_auth section        (API: 503)
     ├── BrokerFilesUnwritable  a broker file could not be written;
     │                          the change was rolled back                (API: 503)
     ├── EdgeNotFound           no such edge, or it is retired            (API: 404)
     ├── EdgeAlreadyRegistered  an active edge has that id                (API: 409)
     └── InvalidEdgeId          not usable as a broker username           (API: 422)

A failed broker *reload* is not an error: the change is committed and the files are
written, so the credentials are returned (they are shown only once) with a warning.
Messages are bilingual, for the operator who reads them in an API error body.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base of every error edge provisioning raises on purpose."""


class ProvisioningDisabled(ProvisioningError):
    def __init__(self) -> None:
        super().__init__(
            "edge provisioning is not configured (broker_auth) / 未配置边缘网关开通（broker_auth）"
        )


class BrokerFilesUnwritable(ProvisioningError):
    """Writing the password or ACL file failed; the database change was rolled back."""


class EdgeNotFound(ProvisioningError):
    def __init__(self, edge_id: str) -> None:
        super().__init__(
            f"edge {edge_id!r} is not registered or is retired / 边缘网关 {edge_id} 未注册或已停用"
        )


class EdgeAlreadyRegistered(ProvisioningError):
    def __init__(self, edge_id: str) -> None:
        super().__init__(
            f"edge {edge_id!r} is already registered; rotate its credentials instead / "
            f"边缘网关 {edge_id} 已注册，请改为更换凭据"
        )


class InvalidEdgeId(ProvisioningError):
    """The id breaks the naming rule or is the hub's own broker username."""
