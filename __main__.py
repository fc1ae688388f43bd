"""harbor-ha: reads the stack config, builds the HA Harbor cluster and Harbor's own objects, exports how to reach
them."""

import pulumi

from components.cluster import HarborCluster, HarborClusterArgs
from components.config import NAMESPACE, from_pulumi_config
from components.sandbox import SandboxHosts, SandboxHostsArgs
from harbor_provider.stack_config import (declare_harbor_objects, merge_sections, parse_harbor_section,
                                          parse_migration_section)

# Every section is parsed and validated before the first resource is registered.
cfg = from_pulumi_config()
harbor_api = merge_sections(parse_harbor_section(cfg.passthrough.get("harborApi")),
                            parse_migration_section(cfg.passthrough.get("migration")))
secret_config = pulumi.Config(NAMESPACE)

# The sandbox stack: the hosts are containers made first, with their generated keys; the cluster is unchanged.
sandbox = SandboxHosts("sandbox", SandboxHostsArgs(cfg=cfg)) if cfg.sandbox else None
if sandbox:
    cfg = cfg.with_hosts(sandbox.hosts)

cluster = HarborCluster("harbor", HarborClusterArgs(
    cfg=cfg,
    ssh_private_key=sandbox.private_key if sandbox else secret_config.require_secret("sshPrivateKey"),
    admin_password=secret_config.get_secret("harborAdminPassword"),
    tls_certificate=secret_config.get_secret("tlsCertificate"),
    tls_private_key=secret_config.get_secret("tlsPrivateKey"),
    backup_s3_access_key=secret_config.get_secret("backupS3AccessKey"),
    backup_s3_secret_key=secret_config.get_secret("backupS3SecretKey"),
    monitoring_secrets={"monitoring_webhook_token": secret_config.get_secret("monitoringWebhookToken"),
                        "monitoring_smtp_password": secret_config.get_secret("monitoringSmtpPassword"),
                        "monitoring_slack_api_url": secret_config.get_secret("monitoringSlackApiUrl")},
    storage_s3_access_key=secret_config.get_secret("storageS3AccessKey"),
    storage_s3_secret_key=secret_config.get_secret("storageS3SecretKey"),
    postgres_password=secret_config.get_secret("postgresPassword"),
    redis_password=secret_config.get_secret("redisPassword"),
    acme_dns_hook=secret_config.get_secret("acmeDnsHook"),
))

# Harbor's registries, projects, robots and replication policies: on this cluster once it is up and healthy,
# or on the existing Harbor named by harborApi.harborUrl.
harbor_objects = declare_harbor_objects(
    harbor_api, url=cluster.url, username=cluster.admin_username, password=cluster.admin_password,
    ca_certificate=cluster.ca_certificate, depends_on=[] if harbor_api.harbor_url else [cluster])

pulumi.export("url", cluster.url)
pulumi.export("vip", cluster.vip)
pulumi.export("nodeAddresses", cluster.node_addresses)
if sandbox:
    # How an operator reaches the sandbox's hosts (scripts/ha_drill.py, ssh): docs/sandbox.md.
    pulumi.export("sandboxSshPrivateKey", sandbox.private_key)
    pulumi.export("sandboxKnownHosts", pulumi.Output.all(*[h.host_key for h in sandbox.hosts]).apply(
        lambda keys: "".join(f"{h.address} {k}\n" for h, k in zip(sandbox.hosts, keys, strict=True))))
    pulumi.export("sandboxHttpsUrl", sandbox.https_url)
if cluster.monitoring:
    pulumi.export("prometheusUrls", cluster.monitoring.prometheus_urls)
    pulumi.export("alertmanagerUrls", cluster.monitoring.alertmanager_urls)
pulumi.export("adminUsername", cluster.admin_username)
pulumi.export("adminPassword", cluster.admin_password)
# What to trust for `url` when the certificate is self-signed: `pulumi stack output caCertificate > ca.pem`, then
# docker's certs.d (docs/getting-started.md) or `ha_drill.py --ca-file ca.pem`. A user certificate exports none.
if cluster.ca_certificate is not None:
    pulumi.export("caCertificate", cluster.ca_certificate)
pulumi.export("robots", {name: {"name": robot.harbor_name, "secret": robot.secret}
                         for name, robot in harbor_objects.robots.items()})
