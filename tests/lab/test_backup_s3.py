"""backup.repository s3 and an `s3:` resticRepository against a real S3 server, in one network namespace (about
40 s): moto_server (moto[server]) behind nginx, which serves TLS with a certificate of a test CA; moto checks every
request's SigV4 signature against an IAM user's keys. Debian's PostgreSQL 15 runs with the parameters Patroni would
set from the rendered config (archive_command included); Debian's pgBackRest and restic read the rendered
pgbackrest.conf and restic files (CA from backup.s3.caCertificate). scripts/backup.py's backup() takes the full
backup and the data-volume snapshot, the rendered timer unit's ExecCondition/ExecStart take a differential one on
the leader only (a stand-in for Patroni's REST API answers /primary), and the restore script scripts/restore.py
runs recovers a point in time into a fresh data directory; restic restores the snapshot. The S3 keys must never
appear on a command line (every process's cmdline is sampled throughout) nor in a log or an output."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional

import pytest
import yaml

from components.config import ClusterConfig, parse_cluster_config
from components.nfs import RESTIC_PASSWORD_FILE, RESTIC_S3_CA, RESTIC_S3_CREDENTIALS, nfs_server_files, restic_command
from components.patroni import PatroniPaths, patroni_files
from components.pgbackrest import STANZA, render_restore_script
from labs import certs as lab_certs
from labs import netns as netns_lab
from labs.db_lab import install
from scripts.backup import Ssh, as_postgres, backup
from tests.support.netlab import stop_process
from tests.support.secret_values import make_secret_values

NET = "198.18.16"  # this test's /24 of the benchmarking range (only on the namespace's loopback)
DB1 = f"{NET}.11"  # the database host the namespace plays (and, for restic, the NFS host)
BLACKHOLE_METRIC = "1816"
S3_HOST, S3_PORT, BUCKET = "s3.lab.test", 9000, "harbor-backup"  # 9000: MinIO's port, not the default 443
PG_BIN = "/usr/lib/postgresql/15/bin"

MOTO_PORT = 9001  # moto_server's plain HTTP port behind nginx

# TLS in front of moto_server: werkzeug's server ends TLS connections without close_notify, which pgBackRest's
# OpenSSL 3 reports as "unexpected eof while reading"; nginx terminates TLS the way S3 servers do and passes the
# Host header through unchanged (it is part of what SigV4 signs).
NGINX_CONF = """daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/s3.crt;
    ssl_certificate_key {dir}/s3.key;
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""

# Run inside the namespace by moto's own interpreter: an IAM user with an S3 policy, its access key, the bucket.
# The first requests moto_server takes unauthenticated (INITIAL_NO_AUTH_ACTION_COUNT) make the user; every later
# one must be signed with the user's keys, which the last call shows by sending a wrong secret.
BOOTSTRAP = """
import json, socket, sys, time
import boto3
url, host, ports, ca, bucket = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4], sys.argv[5]
for port in ports:  # moto's, then nginx's: waited for without a request, which would use up an unauthenticated call
    for _ in range(200):
        try:
            socket.create_connection((host, int(port)), 1).close()
            break
        except OSError:
            time.sleep(0.05)
kw = dict(endpoint_url=url, region_name="us-east-1", verify=ca)
iam = boto3.client("iam", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", **kw)
iam.create_user(UserName="harbor-backup")
iam.put_user_policy(UserName="harbor-backup", PolicyName="s3", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="harbor-backup")["AccessKey"]
s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **kw)
s3.create_bucket(Bucket=bucket)
bad = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key="wrong" * 8, **kw)
try:
    bad.list_objects_v2(Bucket=bucket)
    refused = False
except Exception as err:
    refused = "SignatureDoesNotMatch" in str(err)
print(json.dumps({"access": key["AccessKeyId"], "secret": key["SecretAccessKey"], "wrong_secret_refused": refused}))
"""

# Patroni's REST API as the backup timer's ExecCondition sees it: /primary answers argv[1] (200 leader, 503 not).
PATRONI_STANDIN = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[1]) if self.path == "/primary" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[2], int(sys.argv[3])), Handler).serve_forever()
"""


def s3_values(export_path: str, ca_pem: Optional[str]) -> dict:
    """A Patroni stack whose pgBackRest repository and restic repository are in the test's bucket."""
    s3 = {"endpoint": S3_HOST, "port": S3_PORT, "bucket": BUCKET, "uriStyle": "path",
          **({"caCertificate": ca_pem} if ca_pem else {})}
    return {
        "hosts": [{"name": "nfs1", "address": f"{NET}.10"}, {"name": "db1", "address": DB1},
                  {"name": "db2", "address": f"{NET}.12"}, {"name": "db3", "address": f"{NET}.13"},
                  {"name": "harbor1", "address": f"{NET}.31"}, {"name": "harbor2", "address": f"{NET}.32"}],
        "roles": {"nfs": "nfs1", "postgres": ["db1", "db2", "db3"], "redis": ["harbor1"],
                  "harborNodes": ["harbor1", "harbor2"], "loadBalancers": ["harbor1", "harbor2"]},
        "vip": {"address": f"{NET}.100", "interface": "eth0"},
        "harbor": {"hostname": "harbor.lab.test"},
        "nfs": {"exportPath": export_path},
        "postgres": {"mode": "patroni", "vip": {"address": f"{NET}.50", "interface": "eth0"},
                     "maxConnections": 200, "sharedBuffers": "32MB"},
        "backup": {"repository": "s3", "s3": s3, "path": "/pgbackrest", "retentionFull": 1,
                   "resticRepository": f"s3:https://{S3_HOST}:{S3_PORT}/{BUCKET}/restic"},
    }


def parse(values: dict) -> ClusterConfig:
    return parse_cluster_config(values, secrets_present=("backupS3AccessKey", "backupS3SecretKey"))


class Namespace:
    """One network namespace `dbs3-<pid>` (loopback only, DB1's address on it), S3_HOST resolving to 127.0.0.1
    there (`ip netns exec` bind-mounts /etc/netns/<name>/hosts), and the processes started in it."""

    def __init__(self, workdir: Path):
        self.name = f"dbs3-{os.getpid()}"
        self.workdir = workdir
        self.etc = Path("/etc/netns") / self.name
        self.procs: list[subprocess.Popen] = []
        self.outputs: list[str] = []  # everything the commands printed: the S3 keys must not be in it

    def __enter__(self) -> Namespace:
        netns_lab.ip("route", "replace", *netns_lab.blackhole(BLACKHOLE_METRIC))
        netns_lab.ip("netns", "add", self.name)
        netns_lab.ip("-n", self.name, "link", "set", "lo", "up")
        netns_lab.ip("-n", self.name, "addr", "add", f"{DB1}/32", "dev", "lo")
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "hosts").write_text(f"127.0.0.1 localhost {S3_HOST}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        pids = netns_lab.ip("netns", "pids", self.name, check=False).stdout.split()
        if pids:  # a PostgreSQL a failed step left running (pg_ctl daemonizes it)
            subprocess.run(["kill", "-KILL", *pids], capture_output=True, timeout=10)
        netns_lab.ip("netns", "del", self.name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)
        netns_lab.ip("route", "del", *netns_lab.blackhole(BLACKHOLE_METRIC), check=False)

    def run(self, argv: Sequence[str], *, user: Optional[str] = None, stdin: Optional[str] = None,
            check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = ["ip", "netns", "exec", self.name, *(["runuser", "-u", user, "--"] if user else []), *argv]
        # restic's cache goes to the test's directory, not root's home.
        env = {**os.environ, "RESTIC_CACHE_DIR": str(self.workdir / "restic-cache")}
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
        self.outputs += [r.stdout, r.stderr]
        if check and r.returncode:
            raise RuntimeError(f"{shlex.join(argv)}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
        return r

    def start(self, argv: Sequence[str], log: str, env: Optional[dict] = None) -> subprocess.Popen:
        with open(self.workdir / log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc


class NamespaceSsh(Ssh):
    """scripts/backup.py's SSH, every host being the namespace: Debian's paths of the rendered commands become the
    lab's, and `patronictl list` names db1 leader (no Patroni runs here)."""

    def __init__(self, netns: Namespace, paths: PatroniPaths, nfs_root: Path):
        super().__init__(dry_run=False)
        self.netns = netns
        debian = PatroniPaths()
        self.rewrite = {debian.pgbackrest_conf: paths.pgbackrest_conf, debian.socket_dir: paths.socket_dir,
                        **{f: f"{nfs_root}{f}" for f in (RESTIC_PASSWORD_FILE, RESTIC_S3_CREDENTIALS, RESTIC_S3_CA)}}
        self.commands: list[str] = []

    def run(self, host, command, *, stdin=None, timeout=7200):
        if "patronictl" in command and " list" in command:
            return json.dumps([{"Member": "db1", "Role": "Leader"}])
        for debian, lab in self.rewrite.items():
            command = command.replace(debian, lab)
        self.commands.append(command)
        return self.netns.run(["bash", "-c", command], stdin=stdin, timeout=timeout).stdout


class CmdlineWatch:
    """Samples every process's command line on the machine while the block runs; `seen` holds those that
    contained one of `needles`."""

    def __init__(self, needles: Sequence[str]):
        self.needles = [n.encode() for n in needles]
        self.seen: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.samples += 1
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                except OSError:
                    continue  # exited meanwhile
                shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
                if any(n in cmdline for n in self.needles) and shown not in self.seen:
                    self.seen.append(shown)

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def moto_server() -> str:
    path = Path(sys.executable).with_name("moto_server")
    if not path.exists():
        pytest.fail(f"{path} missing: .ci/run installs moto[server] (requirements-dev.txt)")
    return str(path)


def table_checksums(netns: Namespace, socket_dir: str) -> dict[str, str]:
    """Every table of the public schema: its row count and an md5 of all its rows in a fixed order."""
    def sql(query: str) -> str:
        return netns.run(["psql", "-X", "-At", "-h", socket_dir, "-d", "postgres", "-c", query],
                         user="postgres").stdout.strip()
    tables = sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    return {t: sql(f"SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), '')) "
                   f"FROM {t} r") for t in tables}


def postgresql_conf(rendered_patroni_yml: str) -> str:
    """The parameters Patroni sets from the rendered config: the DCS ones and the member's own (archive_command)."""
    doc = yaml.safe_load(rendered_patroni_yml)
    parameters = {**doc["bootstrap"]["dcs"]["postgresql"]["parameters"], **doc["postgresql"]["parameters"]}
    return "".join(f"{k} = '{str(v).replace(chr(39), chr(39) * 2)}'\n" for k, v in parameters.items())


def unit_commands(unit: str) -> tuple[list[str], list[str]]:
    """(ExecCondition, ExecStart) of a rendered oneshot unit, split as systemd splits them."""
    lines = dict(line.split("=", 1) for line in unit.splitlines() if line.startswith(("ExecCondition=", "ExecStart=")))
    assert "User=postgres\n" in unit
    return shlex.split(lines["ExecCondition"]), shlex.split(lines["ExecStart"])


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are 0700, and PostgreSQL and pgBackRest run as postgres.
    with tempfile.TemporaryDirectory(prefix="dbs3-", dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


def test_pgbackrest_and_restic_back_up_to_s3_and_restore_a_point_in_time_without_leaking_the_keys(workdir):
    ca_pem, cert_pem, key_pem = lab_certs.ca_and_server(S3_HOST, [S3_HOST])
    for name, pem in (("s3-ca.crt", ca_pem), ("s3.crt", cert_pem), ("s3.key", key_pem)):
        (workdir / name).write_bytes(pem)
    volume = workdir / "nfs1-export"
    (volume / "docker/registry/v2/blobs/sha256/ab").mkdir(parents=True)
    (volume / "docker/registry/v2/blobs/sha256/ab/data").write_bytes(os.urandom(300_000))
    (volume / "secret").mkdir()
    (volume / "secret/core-private-key").write_text("not really a key\n")
    original_volume = tree(volume)
    cfg = parse(s3_values(str(volume), ca_pem.decode()))
    db1 = cfg.host("db1")
    url = f"https://{S3_HOST}:{S3_PORT}"

    with Namespace(workdir) as netns:
        netns.start([moto_server(), "-H", "127.0.0.1", "-p", str(MOTO_PORT)], "moto.log",
                    # Path-style requests to this name (moto takes other names' first label as the bucket).
                    env={"MOTO_S3_CUSTOM_ENDPOINTS": f"{url},http://{S3_HOST}:{S3_PORT}",
                         "INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, port=S3_PORT, upstream=MOTO_PORT))
        netns.start(["nginx", "-c", str(workdir / "nginx.conf")], "nginx.log")
        made = json.loads(netns.run([sys.executable, "-c", BOOTSTRAP, url, S3_HOST, f"{MOTO_PORT},{S3_PORT}",
                                     str(workdir / "s3-ca.crt"), BUCKET]).stdout)
        assert made["wrong_secret_refused"], "the S3 server must check signatures, or the keys prove nothing"
        netns.outputs.clear()  # the output that delivered the keys: from here on, no command may print them
        values = {**make_secret_values(cfg), "backup_s3_access_key": made["access"],
                  "backup_s3_secret_key": made["secret"]}
        keys = (made["access"], made["secret"])

        paths = PatroniPaths(root=str(workdir / "db1"), pg_version=cfg.postgres.version)
        rendered = install(patroni_files(cfg, db1, paths), values, workdir / "db1")
        nfs_root = workdir / "nfs1"
        install(nfs_server_files(cfg), values, nfs_root, relocate=True)
        conf = Path(paths.pgbackrest_conf).read_text()
        assert f"repo1-storage-ca-file={paths.s3_ca}\n" in conf and f"repo1-storage-port={S3_PORT}\n" in conf
        ssh = NamespaceSsh(netns, paths, nfs_root)

        with CmdlineWatch(keys) as watch:
            start_postgres(netns, paths, rendered[paths.config])
            pgbackrest = ["pgbackrest", f"--config={paths.pgbackrest_conf}", f"--stanza={STANZA}"]
            # What the role script runs on the leader with an S3 repository.
            netns.run([*pgbackrest, "stanza-create"], user="postgres")
            netns.run([*pgbackrest, "check"], user="postgres")
            load(netns, paths, 1, 20_000)
            taken = backup(cfg, None, ssh, "full")  # pgBackRest on the leader, then restic of the data volume
            load(netns, paths, 100_000, 5_000)  # replayed from the archived WAL

            # The timer's unit, as systemd runs it: its condition skips a replica, the leader backs up.
            condition, start = unit_commands(rendered["/etc/systemd/system/pgbackrest-diff.service"])
            assert condition[-1] == f"http://{DB1}:{cfg.patroni.rest_api_port}/primary"
            replica = run_condition(netns, condition, 503, cfg.patroni.rest_api_port)
            leader = run_condition(netns, condition, 200, cfg.patroni.rest_api_port)
            netns.run(start, user="postgres")

            expected = table_checksums(netns, paths.socket_dir)
            target = netns.run(["psql", "-X", "-At", "-h", paths.socket_dir, "-d", "postgres", "-c",
                                "SELECT clock_timestamp()"], user="postgres").stdout.strip()
            load(netns, paths, 200_000, 5_000)  # after the target: must not come back
            netns.run(["psql", "-X", "-q", "-h", paths.socket_dir, "-d", "postgres", "-c",
                       "DELETE FROM artifact WHERE id % 7 = 0"], user="postgres")
            netns.run([*pgbackrest, "check"], user="postgres")  # the WAL holding the target is in the bucket
            info = json.loads(netns.run([*pgbackrest, "--output=json", "info"], user="postgres").stdout)
            netns.run([f"{PG_BIN}/pg_ctl", "-D", paths.data_dir, "-w", "-m", "fast", "stop"], user="postgres")

            # A fresh host's data directory: pgBackRest restores from the bucket, PostgreSQL replays to the target.
            fresh = PatroniPaths(root=str(workdir / "db1-new"), pg_version=cfg.postgres.version)
            install(patroni_files(cfg, db1, fresh), values, workdir / "db1-new")
            prepare_dirs(fresh, workdir / "db1-new")
            ssh.run(db1, as_postgres("bash -s"), stdin=render_restore_script(cfg, fresh, target))
            netns.run([f"{PG_BIN}/pg_ctl", "-D", fresh.data_dir, "-w", "-l", str(workdir / "db1-new/pg.log"),
                       "-o", f"-c unix_socket_directories={fresh.socket_dir} -c listen_addresses=''", "start"],
                      user="postgres")
            restored = table_checksums(netns, fresh.socket_dir)
            netns.run([f"{PG_BIN}/pg_ctl", "-D", fresh.data_dir, "-w", "-m", "fast", "stop"], user="postgres")

            # The data volume: gone, then back from the snapshot scripts/restore.py --data restores.
            shutil.rmtree(volume)
            ssh.run(cfg.nfs_host, restic_command(cfg, f"restore {shlex.quote(taken['data_snapshot'])} --target /"))
        restored_volume = tree(volume)

        # Without backup.s3.caCertificate neither trusts the test CA: the certificate is verified, not ignored.
        no_ca = parse(s3_values(str(volume), None))
        unverified = PatroniPaths(root=str(workdir / "db1-noca"), pg_version=cfg.postgres.version)
        install(patroni_files(no_ca, db1, unverified), values, workdir / "db1-noca")
        prepare_dirs(unverified, workdir / "db1-noca")
        # (--io-timeout: pgBackRest retries a failed request for 60 s by default.)
        refused_pgbackrest = netns.run(["pgbackrest", f"--config={unverified.pgbackrest_conf}", "--io-timeout=2",
                                        "repo-ls"], user="postgres", check=False)
        with pytest.raises(RuntimeError, match="x509"):
            ssh.run(cfg.nfs_host, restic_command(no_ca, "snapshots"))

    backups = [b["type"] for b in info[0]["backup"]]
    print(f"S3: {len(backups)} backups {backups}, target {target}, rows "
          f"{ {t: v.split()[0] for t, v in restored.items()} }, snapshot {taken['data_snapshot']}, "
          f"{watch.samples} command-line samples")
    assert backups == ["full", "diff"]
    assert 1 <= replica <= 254 and leader == 0, (replica, leader)  # 1..254: systemd skips the unit, no failure
    assert restored == expected and set(expected) == {"artifact", "project"}
    assert restored_volume == original_volume and len(restored_volume) == 2
    assert any("AWS_SHARED_CREDENTIALS_FILE=" in c and " backup --json" in c for c in ssh.commands)
    assert refused_pgbackrest.returncode != 0 and "unable to get local issuer certificate" in \
        refused_pgbackrest.stderr + refused_pgbackrest.stdout
    # The keys: never on a command line, in a log pgBackRest or PostgreSQL wrote, or in anything a command printed.
    assert watch.samples > 0 and watch.seen == []
    logs = [p for at in (paths, fresh) for p in [*Path(at.pgbackrest_log).iterdir(), Path(at.root) / "pg.log"]]
    assert len(logs) >= 4, logs
    # pgBackRest logs each command's options: the key options appear, redacted (the logs were worth reading).
    assert any("--repo1-s3-key-secret=<redacted>" in p.read_text(errors="replace") for p in logs)
    leaks = [str(p) for p in logs if any(k in p.read_text(errors="replace") for k in keys)]
    leaks += [out[:300] for out in netns.outputs if any(k in out for k in keys)]
    assert leaks == []


def tree(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def prepare_dirs(paths: PatroniPaths, root: Path) -> None:
    """The directories Debian's packages and the role script make, owned by postgres (data directory 0700)."""
    for d in (paths.data_dir, paths.socket_dir, paths.pgbackrest_log, paths.pgbackrest_lock):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "postgres", "postgres")
    os.chmod(paths.data_dir, 0o700)
    log = Path(paths.root) / "pg.log"  # pg_ctl -l: PostgreSQL's log
    log.touch()
    shutil.chown(log, "postgres", "postgres")
    for parent in Path(paths.data_dir).parents:  # traversable by postgres
        if str(parent).startswith(str(root)):
            os.chmod(parent, 0o755)


def start_postgres(netns: Namespace, paths: PatroniPaths, rendered_patroni_yml: str) -> None:
    """initdb (with data checksums, as Patroni's bootstrap) and PostgreSQL with Patroni's parameters."""
    prepare_dirs(paths, Path(paths.root))
    netns.run([f"{PG_BIN}/initdb", "-D", paths.data_dir, "--data-checksums", "--auth-local=peer"], user="postgres")
    with open(Path(paths.data_dir) / "postgresql.conf", "a") as conf:
        conf.write(postgresql_conf(rendered_patroni_yml) + "listen_addresses = ''\n")
    netns.run([f"{PG_BIN}/pg_ctl", "-D", paths.data_dir, "-w", "-l", f"{paths.root}/pg.log", "start"],
              user="postgres")


def load(netns: Namespace, paths: PatroniPaths, first: int, count: int) -> None:
    """Harbor-like rows: projects and their artifacts, ids from `first`."""
    netns.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", paths.socket_dir, "-d", "postgres", "-c",
               "CREATE TABLE IF NOT EXISTS project (id int PRIMARY KEY, name text);"
               "CREATE TABLE IF NOT EXISTS artifact (id int PRIMARY KEY, project_id int, digest text, size bigint);"
               f"INSERT INTO project SELECT g, 'project-' || g FROM generate_series({first}, {first + count // 100}) g;"
               f"INSERT INTO artifact SELECT g, {first} + g % {count // 100 + 1}, md5(g::text), g::bigint * 1024 "
               f"FROM generate_series({first}, {first + count - 1}) g;"], user="postgres")


def run_condition(netns: Namespace, condition: list[str], status: int, port: int) -> int:
    """The unit's ExecCondition (as postgres) against a stand-in answering /primary with `status`: its exit code."""
    proc = netns.start([sys.executable, "-c", PATRONI_STANDIN, str(status), DB1, str(port)], f"patroni-{status}.log")
    try:
        for _ in range(100):
            code = netns.run(condition, user="postgres", check=False).returncode
            if code != 7:  # curl's "connection refused": the stand-in does not listen yet
                return code
            time.sleep(0.1)
        raise AssertionError("the stand-in for Patroni's REST API never listened")
    finally:
        stop_process(proc)
        netns.procs.remove(proc)
