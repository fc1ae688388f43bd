"""The object store: a Garage cluster on roles.objectStore keeping Harbor's images (storage.mode s3).

Each object-store host runs Garage (one zone per host, every object on `replicationFactor` of them, consistent
mode) with its S3 API on loopback only, and nginx in front of it serving TLS with a cluster-CA certificate: Garage
speaks plain HTTP, and Harbor's registry verifies the endpoint like every other internal service (the cluster CA is
already in the bundle Harbor's containers trust). How a Harbor node avoids a dead object-store host: the endpoint's
name (S3_TLS_NAME) resolves, inside the containers that reach the bucket, to every object-store host's address
(docker-compose extra_hosts, written by harbor-node.sh); Go's dialer tries them in turn, so a host that does not
answer costs one failed connect and the next one serves, and any Garage node serves any object.
"""

from __future__ import annotations

from components.config import ClusterConfig

# The name Harbor's registry calls the S3 endpoint by, and the one the nginx certificate carries. RFC 2606 reserves
# .invalid: it resolves only where harbor-node.sh writes it (the containers' /etc/hosts).
S3_TLS_NAME = "s3.harbor-ha.invalid"


def s3_endpoint(cfg: ClusterConfig) -> str | None:
    """The URL Harbor's registry reaches the bucket at: storage.s3.endpoint, the role's TLS endpoint, or None (AWS)."""
    s3, garage = cfg.storage.s3, cfg.storage.garage
    if s3 is None:
        raise ValueError("storage.mode is not s3")
    if garage is not None:
        return f"https://{S3_TLS_NAME}:{garage.https_port}"
    return s3.endpoint
