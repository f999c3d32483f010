"""Edge provisioning: broker credentials for edges and the Mosquitto files that enforce them.

* :mod:`~hub.provisioning.mosquitto_files`: the password file (Mosquitto's ``$7$``
  PBKDF2-SHA512 format) and the ACL file, rendered as text, written atomically (0600);
* :mod:`~hub.provisioning.reload`: SIGHUP to the broker's pid file, or a configured command;
* :mod:`~hub.provisioning.service`: register / list / rotate / retire, audited, with the
  files rewritten from the ``edges`` table in the same transaction;
* :mod:`~hub.provisioning.errors`: what the API translates.
"""

from hub.provisioning.errors import (
    BrokerFilesUnwritable,
    EdgeAlreadyRegistered,
    EdgeNotFound,
    InvalidEdgeId,
    ProvisioningDisabled,
    ProvisioningError,
)
from hub.provisioning.service import (
    EdgeRegistry,
    IssuedCredentials,
    RetiredEdge,
    edge_registry_for,
    list_edges,
)

__all__ = [
    "BrokerFilesUnwritable",
    "EdgeAlreadyRegistered",
    "EdgeNotFound",
    "EdgeRegistry",
    "InvalidEdgeId",
    "IssuedCredentials",
    "ProvisioningDisabled",
    "ProvisioningError",
    "RetiredEdge",
    "edge_registry_for",
    "list_edges",
]
