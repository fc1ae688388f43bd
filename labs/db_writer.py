"""Harbor-like write load for the database drills: run INSIDE a client namespace by labs/db_lab.py, with Debian's
/usr/bin/python3 (it has psycopg2).

Each transaction inserts an artifact and its tag (the two rows a Harbor push commits together) through the
endpoint, every `--interval` seconds, reconnecting after any error. Every acknowledged commit is one line
`ack SEQ MONOTONIC_TIME` on stdout (flushed), every failure `err SEQ MONOTONIC_TIME`; CLOCK_MONOTONIC is shared by
the processes of one machine, so the lab compares these times with its own. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import psycopg2

SCHEMA = """
CREATE TABLE IF NOT EXISTS drill_artifact (id bigserial PRIMARY KEY, digest text UNIQUE NOT NULL,
    repository_name text NOT NULL, push_time timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS drill_tag (id bigserial PRIMARY KEY,
    artifact_id bigint NOT NULL REFERENCES drill_artifact(id), name text NOT NULL);
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True, help="libpq connection string (password from PGPASSWORD)")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--start", type=int, default=0, help="first sequence number (unique per run)")
    args = parser.parse_args()
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    # A dead leader's socket never answers: keepalives and tcp_user_timeout turn that into an error within ~2 s.
    dsn = (f"{args.dsn} connect_timeout=2 keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2 "
           "tcp_user_timeout=2000")
    conn = None
    seq = args.start
    while running:
        seq += 1
        try:
            if conn is None:
                conn = psycopg2.connect(dsn)
                with conn, conn.cursor() as cur:
                    cur.execute(SCHEMA)
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO drill_artifact (digest, repository_name) VALUES (%s, %s) RETURNING id",
                            (f"sha256:{seq:064d}", f"library/app{seq % 50}"))
                cur.execute("INSERT INTO drill_tag (artifact_id, name) VALUES (%s, %s)",
                            (cur.fetchone()[0], f"v{seq}"))
            print(f"ack {seq} {time.monotonic():.6f}", flush=True)
        except psycopg2.Error:
            print(f"err {seq} {time.monotonic():.6f}", flush=True)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.2)
            continue
        time.sleep(args.interval)
    if conn is not None:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
