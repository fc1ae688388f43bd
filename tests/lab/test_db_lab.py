"""The database drills of labs/db_lab.py, once each (about 4 minutes on 2 cores): a 3-node Patroni + etcd +
vip-manager cluster and a pgBackRest repository host in network namespaces, every daemon on the program's rendered
files (etcd, Patroni validated by `patroni --validate-config`, vip-manager, `pgbackrest server`, `pgbackrest check`),
Harbor's user connecting through the database VIP with sslmode verify-full (psql, and psycopg2 in labs/db_writer.py).
Behaviour is asserted, timing only printed (docs/database-ha.md keeps the measured figures)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from labs import db_lab


def test_drills_lose_no_synchronous_commit_rejoin_the_old_leader_restore_identical_data_and_stay_on_tls():
    # Not pytest's tmp_path: its parents are 0700, and PostgreSQL runs as postgres (and its socket path is short).
    with tempfile.TemporaryDirectory(prefix="dbha-lab-", dir="/tmp") as tmp:
        result = db_lab.drills(Path(tmp), log=print)
    print(json.dumps(result, indent=2))
    assert result["db_failover"]["lost_commits"] == 0  # strict synchronous mode
    assert result["db_failover"]["rejoined"] and result["db_failover_async"]["rejoined"]
    # The drill can fail: with the WAL senders frozen before the kill, asynchronous mode loses the commits it
    # acknowledged in that window (none only if the client happened to acknowledge nothing).
    assert result["details"]["failover_async"]["acknowledged"] > 0
    assert result["restore"]["identical"] and result["restore"]["rows"] > 0
    assert all(r["new_leader"] != r["old_leader"] for r in result["details"]["switchovers"])
    # TLS: Harbor's user reaches the leader through the VIP with verify-full before and after a failover and a
    # switchover (the writer did too: every drill's commits were acknowledged over it), is refused in plaintext by
    # pg_hba, and both replicas stream over TLS (pg_stat_replication joined with pg_stat_ssl).
    for when, tls in result["details"]["tls"].items():
        assert tls["harbor_verify_full"] and tls["plaintext_refused"], (when, tls)
        assert tls["walsenders"] == len(tls["walsenders_tls"]) == 2, (when, tls)
