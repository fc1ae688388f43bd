"""harbor-ha: reads the stack config, builds the HA Harbor cluster and Harbor's own objects, exports how to reach them."""

import pulumi

from components.cluster import HarborCluster, HarborClusterArgs
from components.config import NAMESPACE, from_pulumi_config
from harbor_provider.stack_config import (declare_harbor_objects, merge_sections, parse_harbor_section,
                                          parse_migration_section)

# Every section is parsed and validated before the first resource is registered.
cfg = from_pulumi_config()
harbor_api = merge_sections(parse_harbor_section(cfg.passthrough.get("harborApi")),
                            parse_migration_section(cfg.passthrough.get("migration")))
secret_config = pulumi.Config(NAMESPACE)

cluster = HarborCluster("harbor", HarborClusterArgs(
    cfg=cfg,
    ssh_private_key=secret_config.require_secret("sshPrivateKey"),
    admin_password=secret_config.get_secret("harborAdminPassword"),
    tls_certificate=secret_config.get_secret("tlsCertificate"),
    tls_private_key=secret_config.get_secret("tlsPrivateKey"),
    backup_s3_access_key=secret_config.get_secret("backupS3AccessKey"),
    backup_s3_secret_key=secret_config.get_secret("backupS3SecretKey"),
))

# Harbor's registries, projects, robots and replication policies: on this cluster once it is up and healthy,
# or on the existing Harbor named by harborApi.harborUrl.
harbor_objects = declare_harbor_objects(
    harbor_api, url=cluster.url, username=cluster.admin_username, password=cluster.admin_password,
    ca_certificate=cluster.ca_certificate, depends_on=[] if harbor_api.harbor_url else [cluster])

pulumi.export("url", cluster.url)
pulumi.export("vip", cluster.vip)
pulumi.export("nodeAddresses", cluster.node_addresses)
pulumi.export("adminUsername", cluster.admin_username)
pulumi.export("adminPassword", cluster.admin_password)
pulumi.export("robots", {name: {"name": robot.harbor_name, "secret": robot.secret}
                         for name, robot in harbor_objects.robots.items()})
