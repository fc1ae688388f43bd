"""harbor-ha: reads the stack config, builds the HA Harbor cluster, exports how to reach it."""

import pulumi

from components.cluster import HarborCluster, HarborClusterArgs
from components.config import NAMESPACE, from_pulumi_config

cfg = from_pulumi_config()
secret_config = pulumi.Config(NAMESPACE)

cluster = HarborCluster("harbor", HarborClusterArgs(
    cfg=cfg,
    ssh_private_key=secret_config.require_secret("sshPrivateKey"),
    admin_password=secret_config.get_secret("harborAdminPassword"),
    tls_certificate=secret_config.get_secret("tlsCertificate"),
    tls_private_key=secret_config.get_secret("tlsPrivateKey"),
))

pulumi.export("url", cluster.url)
pulumi.export("vip", cluster.vip)
pulumi.export("nodeAddresses", cluster.node_addresses)
pulumi.export("adminUsername", cluster.admin_username)
pulumi.export("adminPassword", cluster.admin_password)
