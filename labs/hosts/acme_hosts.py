"""`host_lab.py acme`: tls.mode acme on real Debian 12 hosts against pebble, and the certificate-expiry alert.

    sudo venv/bin/python labs/hosts/host_lab.py acme --json FILE [--keep] [--no-alert]

The observe lab's shape (labs/hosts/observe.py: the dev shape, the monitoring role on data1, Alertmanager's webhook
to a recorder) with `tls.mode: acme`, and pebble (Debian's package, Let's Encrypt's ACME test server) with
pebble-challtestsrv as its DNS on a fourth host outside the stack (acme1): every name resolves to the VIP, so the
CA's HTTP-01 request reaches whichever LB holds it. pebble's certificates live two days and EXTRA_S seconds: with
`tls.acme.renewBeforeDays: 1` (lego renews when the whole days left are at most renewBeforeDays) and
`monitoring.certificateWarningDays: 2` the certificate is due and "expiring soon" EXTRA_S seconds after its
issuance, not before. Then, in order:
- issuance: the apply's own run of harbor-ha-acme.service on the VIP holder obtains the certificate, pushes it to
  the other LB (over sshd, with the push key the program generates), nginx serves it on the VIP;
- a failed renewal: the name resolves elsewhere (pebble-challtestsrv's A record moved to acme1, where nothing
  listens on port 80); the renewal unit run by systemd fails, is scheduled again (Restart=on-failure, 20 min) and
  nginx keeps serving the current certificate on both LBs;
- CertificateExpiringSoon fires at the receiver (the blackbox probe of the VIP reads the served certificate);
- the DNS repaired and the unit run again (`systemctl restart`, which brings the scheduled retry forward): a
  renewal because the certificate is within renewBeforeDays (no --force), pushed to the other LB, and the alert
  resolves;
- the VIP moved to the other LB (keepalived stopped on the holder): keepalived's notify runs the unit there, it
  serves what both LBs have, renews (`acme.sh renew --force`, as docs/operations/certificates.md has an operator do)
  and pushes to the first LB through its sshd; keepalived started again, the VIP returns, the first LB's own run,
  and it serves what both have;
- the push key's restrictions in authorized_keys: from the peer it runs `acme.sh receive` whatever the command
  asked for; from another host it is refused;
- a failover during a renewal (renewal_during_failover): the VIP holder powered off while its due renewal waits for
  the CA's validation; the other LB renews, the old holder back takes its certificate instead of renewing again;
  a client through the VIP sees the failover's gap and nothing else.
`--no-alert` (and `host_lab.py observe`, which runs this lab for its `acme` figures) leaves out the expiry alert.
Real: pebble, lego, sshd, nginx, keepalived, Prometheus, Alertmanager and the blackbox exporter from Debian's
packages; the files and commands the program registers (labs/hosts/replay.py). Stand-ins: Harbor and NFS as in the
observe lab; DNS is pebble-challtestsrv's (only pebble resolves through it: the probe and the checks here connect
to the VIP's address with the name as SNI).
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any, Optional

from labs import certs as lab_certs
from labs.hosts import host_lab
from labs.hosts.host_lab import HOSTNAME, MACHINES, HostLab, address, log, ssh
from labs.hosts.observe import OBSERVE, Drill, Observe

ACME_HOST = MACHINES["node3"]  #: h4: booted by the lab, in no role of the stack (pebble runs there)
PEBBLE_DIR = "/etc/lab-pebble"
PEBBLE_PORT = 14000
EXTRA_S = 180  #: pebble's certificates live two days and this: "expiring within two days" this long after issuance
VALIDITY_S = 2 * 86400 + EXTRA_S
RENEW_BEFORE_DAYS = 1  #: lego renews when the whole days left are at most this: EXTRA_S after issuance
WARNING_DAYS = 2  #: the alert's condition (less than two days left) holds EXTRA_S after issuance too
WEBROOT = "/var/www/harbor-ha-acme/.well-known/acme-challenge"
HOLD_TABLE = "hha_lab_hold"  #: acme1's nftables table that holds the CA's HTTP-01 requests
ACME_BIN = "/usr/local/lib/harbor-ha/acme.sh"
LIVE = "/etc/harbor-ha/tls/live/harbor.crt"
PUSH_KEY = "/var/lib/harbor-ha/acme/push.key"
KNOWN_HOSTS = "/var/lib/harbor-ha/acme/known_hosts"
UNIT = "harbor-ha-acme.service"
ALERT = "CertificateExpiringSoon"
# On the VIP holder: waits (60 s at most) for lego's HTTP-01 token in the webroot: the order is under way, the CA is
# about to validate; prints the token's name.
WAIT_TOKEN = f"""
for _ in $(seq 1 600); do
  for f in {WEBROOT}/*; do if [ -e "$f" ]; then basename "$f"; exit 0; fi; done
  sleep 0.1
done
echo "no HTTP-01 token in {WEBROOT} after 60 s" >&2
exit 1
"""
# pebble and its DNS as transient units on acme1. PEBBLE_VA_NOSLEEP: validate at once; no nonce rejections; no
# authorization reuse: every renewal is validated over HTTP-01 again (else a failed DNS would not fail a renewal).
START_PEBBLE = f"""
set -euo pipefail
systemctl stop lab-pebble lab-challtestsrv 2>/dev/null || true
systemd-run --quiet --unit lab-challtestsrv pebble-challtestsrv -defaultIPv4 "$1" -defaultIPv6 "" \\
  -dns01 127.0.0.1:8053 -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055
systemd-run --quiet --unit lab-pebble --setenv=PEBBLE_VA_NOSLEEP=1 --setenv=PEBBLE_WFE_NONCEREJECT=0 \\
  --setenv=PEBBLE_AUTHZREUSE=0 pebble -config {PEBBLE_DIR}/pebble.json -dnsserver 127.0.0.1:8053
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null --cacert {PEBBLE_DIR}/https-ca.crt "https://$2:{PEBBLE_PORT}/dir" && exit 0
  sleep 0.5
done
echo "pebble does not answer on https://$2:{PEBBLE_PORT}/dir after 60 s" >&2
journalctl -u lab-pebble --no-pager | tail -20 >&2
exit 1
"""


class AcmeLab:
    def __init__(self, lab: HostLab, obs: Observe):
        self.lab, self.obs = lab, obs
        self.lbs: list[str] = list(OBSERVE.roles["loadBalancers"])
        self.pebble_url = f"https://{address(ACME_HOST)}:{PEBBLE_PORT}/dir"

    # ------------------------------------------------------------------------------------------------- pebble
    def start_pebble(self) -> dict[str, str]:
        """pebble on acme1 (its HTTPS from a lab CA); returns that CA and pebble's root (the issuer of what it
        signs), both PEM."""
        t0 = time.monotonic()
        # nftables: the failover drill holds the CA's validation requests (hold_validation); python3: the client.
        ssh(ACME_HOST, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble openssl "
            "curl nftables python3 >/dev/null", timeout=600)
        ca, cert, key = lab_certs.ca_and_server("pebble", [address(ACME_HOST)], days=2)
        config = {"pebble": {"listenAddress": f"0.0.0.0:{PEBBLE_PORT}", "managementListenAddress": "127.0.0.1:15000",
                             "certificate": f"{PEBBLE_DIR}/https.crt", "privateKey": f"{PEBBLE_DIR}/https.key",
                             "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
                             "externalAccountBindingRequired": False,
                             "certificateValidityPeriod": VALIDITY_S}}
        for name, content in (("https-ca.crt", ca.decode()), ("https.crt", cert.decode()),
                              ("https.key", key.decode()), ("pebble.json", json.dumps(config))):
            ssh(ACME_HOST, f"install -d -m 0700 {PEBBLE_DIR} && umask 077 && cat > {PEBBLE_DIR}/{name}",
                input=content)
        ssh(ACME_HOST, f"bash -s {self.lab.vip} {address(ACME_HOST)}", input=START_PEBBLE, timeout=120)
        root = ssh(ACME_HOST, f"curl -fsS -k https://127.0.0.1:15000/roots/0 | tee {PEBBLE_DIR}/root.crt").stdout
        log(f"acme: pebble on {ACME_HOST} in {time.monotonic() - t0:.1f} s")
        return {"https_ca": ca.decode(), "root": root}

    def dns(self, target: Optional[str]) -> None:
        """pebble-challtestsrv's answer for the cluster's name: `target`, or (None) back to its default, the VIP."""
        body = json.dumps({"host": HOSTNAME, **({"addresses": [target]} if target else {})})
        ssh(ACME_HOST, f"curl -fsS -d {shlex.quote(body)} http://127.0.0.1:8055/{'add-a' if target else 'clear-a'}")

    # ------------------------------------------------------------------------------------------------ checks
    def served(self) -> Optional[str]:
        """Serial of the certificate the VIP serves for the cluster's name, verified against pebble's root (None:
        none that verifies)."""
        out = ssh(ACME_HOST, f"echo | openssl s_client -connect {self.lab.vip}:443 -servername {HOSTNAME} "
                  f"-CAfile {PEBBLE_DIR}/root.crt -verify_hostname {HOSTNAME} -verify_return_error 2>/dev/null "
                  "| openssl x509 -noout -serial", check=False, timeout=30)
        return out.stdout.strip().removeprefix("serial=") or None if out.returncode == 0 else None

    def live(self, lb: str) -> str:
        """Serial of the certificate nginx reads on `lb`."""
        return ssh(MACHINES[lb], f"openssl x509 -noout -serial -in {LIVE}").stdout.strip().removeprefix("serial=")

    def lives(self) -> dict[str, str]:
        return {lb: self.live(lb) for lb in self.lbs}

    def holder(self) -> Optional[str]:
        held = self.lab.vip_holder(self.lbs)
        return held[0] if len(held) == 1 else None

    def unit(self, lb: str) -> dict[str, str]:
        out = ssh(MACHINES[lb], f"systemctl show -p ActiveState -p SubState -p Result -p NRestarts "
                  f"-p RestartUSec {UNIT}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, lb: str, since: str) -> str:
        return ssh(MACHINES[lb], f"journalctl -u {UNIT} --since @{since} --no-pager -o cat", check=False).stdout

    def wait_vip_on(self, lb: str) -> Optional[float]:
        return self.obs.wait(f"the VIP on {lb}", lambda: self.holder() == lb, 60, 0.5)

    # ----------------------------------------------------------------------------------------------- phases
    def issuance(self) -> dict[str, Any]:
        """The apply started the unit on both LBs; the holder obtains the certificate and pushes it."""
        t0 = time.monotonic()
        got = self.obs.wait("the VIP serving a certificate from pebble, the same on both LBs",
                            lambda: (s := self.served()) is not None and set(self.lives().values()) == {s}, 300, 2)
        holder = self.holder()
        result = {"issued": got is not None, "issued_s": got, "holder": holder, "serial": self.served(),
                  "lives": self.lives(), "waited_from": "end of the apply"}
        log(f"acme: issuance {result} ({time.monotonic() - t0:.1f} s)")
        return result

    def failed_renewal(self, holder: str, serial: str) -> dict[str, Any]:
        """Due for renewal (within renewBeforeDays), the CA cannot reach the VIP for the name: the unit fails, is
        retried later by systemd, and the current certificate stays served by both LBs."""
        since = ssh(MACHINES[holder], "date +%s").stdout.strip()
        self.dns(address(ACME_HOST))
        run = ssh(MACHINES[holder], f"systemctl start {UNIT}", check=False, timeout=300)
        state = self.unit(holder)
        journal = self.journal(holder, since)
        errors = [line for line in journal.splitlines() if "error" in line.lower() or "ERROR" in line][-3:]
        result = {"start_rc": run.returncode, "unit": state,
                  "retry_scheduled": state.get("SubState") == "auto-restart" and state.get("RestartUSec") == "20min",
                  "error": errors, "served": self.served(), "lives": self.lives()}
        result["kept_serving"] = result["served"] == serial and set(result["lives"].values()) == {serial}
        log(f"acme: failed renewal {result}")
        return result

    def renewal(self, holder: str, serial: str, expected_fail: str) -> dict[str, Any]:
        """DNS repaired, the unit run again now (restart: `start` would wait for the scheduled retry): it renews
        without --force because the certificate is within renewBeforeDays, and pushes to the other LB."""
        since = ssh(MACHINES[holder], "date +%s").stdout.strip()
        self.dns(None)
        run = ssh(MACHINES[holder], f"systemctl restart {UNIT}", check=False, timeout=300)
        renewed = self.served()
        result = {"restart_rc": run.returncode, "unit": self.unit(holder), "served": renewed, "lives": self.lives(),
                  "journal": [line for line in self.journal(holder, since).splitlines() if "harbor-ha acme" in line]}
        result["renewed"] = (run.returncode == 0 and renewed not in (None, serial, expected_fail)
                             and set(result["lives"].values()) == {renewed})
        log(f"acme: renewal {result}")
        return result

    def from_the_other_lb(self, holder: str) -> dict[str, Any]:
        """The VIP on the other LB (keepalived stopped on the holder): keepalived's notify runs the unit there (it
        renews only a certificate issued more than EXTRA_S ago), then it serves what both LBs have, renews (--force)
        and pushes to the first through its sshd; keepalived back,
        the VIP returns (preemption), the first's own run, and it serves what both have."""
        other = next(lb for lb in self.lbs if lb != holder)

        def after_notify(lb: str) -> tuple[Optional[str], dict[str, str]]:
            self.obs.wait(f"the run keepalived started on {lb}",
                          lambda: self.unit(lb).get("ActiveState") in ("inactive", "failed"), 300, 1)
            return self.served(), self.lives()

        ssh(MACHINES[holder], "systemctl stop keepalived")
        try:
            moved = self.wait_vip_on(other)
            served_by_other, lives_before = after_notify(other)
            run = ssh(MACHINES[other], f"{ACME_BIN} renew --force", check=False, timeout=300)
            renewed = self.served()
            lives = self.lives()
        finally:
            ssh(MACHINES[holder], "systemctl start keepalived")
        back = self.wait_vip_on(holder)
        served_by_holder, lives_after = after_notify(holder)
        pushed = [line for line in run.stderr.splitlines() if "pushed to" in line or "ERROR" in line]
        result = {"vip_moved_s": moved, "served_by_other": served_by_other, "lives_before": lives_before,
                  "renew_rc": run.returncode, "push": pushed, "renewed_serial": renewed, "lives": lives,
                  "vip_back_s": back, "served_by_first": served_by_holder, "lives_after": lives_after}
        result["ok"] = (served_by_other is not None and set(lives_before.values()) == {served_by_other}
                        and run.returncode == 0 and renewed not in (None, served_by_other)
                        and set(lives.values()) == {renewed}
                        and served_by_holder is not None and set(lives_after.values()) == {served_by_holder})
        log(f"acme: renewal from the other LB {result}")
        return result

    def push_key_restricted(self, holder: str) -> dict[str, Any]:
        """The push key in the peer's authorized_keys: from the holder it runs `acme.sh receive` whatever command
        is asked (here `id`); from a host that is not the peer (acme1, given a copy of the key) sshd refuses it.
        acme1 is in no role of the stack: the LB's firewall lets its ssh through, so only `from=` can refuse."""
        other = next(lb for lb in self.lbs if lb != holder)
        ssh_opts = f"-i {PUSH_KEY} -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no"
        peer = address(MACHINES[other])
        asked = ssh(MACHINES[holder], f"ssh {ssh_opts} -o UserKnownHostsFile={KNOWN_HOSTS} root@{peer} id "
                    "</dev/null", check=False, timeout=60)
        key = ssh(MACHINES[holder], f"cat {PUSH_KEY}").stdout
        ssh(ACME_HOST, "umask 077 && cat > /root/lab-push.key", input=key)
        try:
            stranger = ssh(ACME_HOST, f"ssh {ssh_opts.replace(PUSH_KEY, '/root/lab-push.key')} "
                           f"-o UserKnownHostsFile=/dev/null root@{peer} true </dev/null", check=False, timeout=60)
        finally:
            ssh(ACME_HOST, "rm -f /root/lab-push.key")
        result = {"from_peer_rc": asked.returncode, "from_peer_ran_id": "uid=0" in asked.stdout,
                  "from_peer_stderr": asked.stderr.strip()[-200:], "from_other_host_rc": stranger.returncode,
                  "from_other_host_stderr": stranger.stderr.strip()[-200:]}
        # 255: ssh's own failure (refused); another status is the forced command's (receive finds no tar on stdin).
        result["ok"] = (not result["from_peer_ran_id"] and asked.returncode not in (0, 255)
                        and stranger.returncode == 255
                        and "Permission denied" in stranger.stderr)
        log(f"acme: push key {result}")
        return result

    # ------------------------------------------------------------------------------- failover during a renewal
    def hold_validation(self, hold: bool) -> None:
        """acme1 drops (or no longer drops) its packets to the VIP's port 80: pebble's HTTP-01 request waits in
        TCP's SYN retries (its dial gives up after 15 s), as a CA's validation from afar can take seconds."""
        if hold:
            ssh(ACME_HOST, f"nft add table inet {HOLD_TABLE} && nft add chain inet {HOLD_TABLE} out "
                "'{ type filter hook output priority 0; }' && "
                f"nft add rule inet {HOLD_TABLE} out ip daddr {self.lab.vip} tcp dport 80 drop")
        else:
            ssh(ACME_HOST, f"nft delete table inet {HOLD_TABLE} 2>/dev/null || true")

    def vip_on(self, lb: str) -> bool:
        """`lb` holds the VIP (False while it does not answer: powered off, booting)."""
        out = ssh(MACHINES[lb], "ip -o -4 addr show", check=False, timeout=30)
        return out.returncode == 0 and f" {self.lab.vip}/" in out.stdout

    def due_in(self, lb: str) -> float:
        """Seconds until the certificate nginx reads on `lb` is due (lego: whole days left at most renewBeforeDays)."""
        end = ssh(MACHINES[lb], f"date -d \"$(openssl x509 -noout -enddate -in {LIVE} | cut -d= -f2)\" +%s").stdout
        return float(end) - (RENEW_BEFORE_DAYS + 1) * 86400 - time.time()

    def state(self, lb: str) -> dict[str, Any]:
        """What `lb` holds: whether the live certificate and key are a pair, whether lego's copy of them is, lego's
        serial, and a hash of lego's account files."""
        script = ("set -euo pipefail; . /etc/harbor-ha/acme.env; d=$ACME_DIR/lego; "
                  "n=${ACME_DOMAINS%% *}; pub() { openssl x509 -noout -pubkey -in \"$1\" | sha256sum; }; "
                  "key() { openssl pkey -in \"$1\" -pubout | sha256sum; }; "
                  f"[ \"$(pub {LIVE})\" = \"$(key {LIVE.removesuffix('.crt')}.key)\" ] && echo live-paired; "
                  "[ \"$(pub $d/certificates/$n.crt)\" = \"$(key $d/certificates/$n.key)\" ] && echo lego-paired; "
                  "echo \"lego $(openssl x509 -noout -serial -in $d/certificates/$n.crt)\"; "
                  "echo \"account $(find $d/accounts -type f | sort | xargs cat | sha256sum | cut -c1-16)\"")
        out = ssh(MACHINES[lb], f"bash -c {shlex.quote(script)}", check=False).stdout
        words = dict(line.split(" ", 1) if " " in line else (line, "yes") for line in out.splitlines())
        return {"live_paired": "live-paired" in words, "lego_paired": "lego-paired" in words,
                "lego_serial": words.get("lego", "").removeprefix("serial="), "account": words.get("account")}

    def issued_since(self, since: str) -> list[str]:
        """Serials pebble issued since the epoch `since` (its log: "Issued certificate serial S for order O")."""
        out = ssh(ACME_HOST, f"journalctl -u lab-pebble --since @{since} --no-pager -o cat", check=False).stdout
        return [line.split("serial ", 1)[1].split()[0] for line in out.splitlines()
                if "Issued certificate serial" in line]

    def renewal_during_failover(self, holder: str) -> dict[str, Any]:
        """The VIP holder powered off (every process killed at once, as debhosts.sh kill does) while its renewal
        waits for the CA's validation: the timer's run of the unit with a certificate due, lego's token written, the
        CA's request held at acme1 (hold_validation) so that the cut lands inside the order. The other LB takes the
        VIP, keepalived's notify runs the unit there and it renews (its push to the dead host fails: retried in
        20 min); the held request, released, reaches the new holder, which has no such token. The old holder powered
        on takes the VIP back (preemption), its notify run exchanges with the peer first and adopts the newer
        certificate. A client through the VIP (acme1, the name resolved to the VIP, pebble's root trusted) counts
        what it sees meanwhile."""
        other = next(lb for lb in self.lbs if lb != holder)
        before = self.served()
        wait = max(0.0, self.due_in(holder) + 2)
        log(f"acme: failover drill: {before} on the VIP, due in {wait:.0f} s")
        time.sleep(wait)
        since = ssh(ACME_HOST, "date +%s").stdout.strip()
        ssh(MACHINES[holder], f"rm -f {WEBROOT}/*")
        self.hold_validation(True)
        client = self.lab.start_client(ACME_HOST, 0.1, url=f"https://{HOSTNAME}/api/v2.0/health",
                                       ca=ssh(ACME_HOST, f"cat {PEBBLE_DIR}/root.crt").stdout,
                                       hosts=f"127.0.0.1 localhost\n{self.lab.vip} {HOSTNAME}\n")
        result: dict[str, Any] = {"cut": holder, "kind": "power cut (debhosts.sh kill)", "served_before": before}
        try:
            time.sleep(2)
            ssh(MACHINES[holder], f"systemctl start --no-block {UNIT}")
            token = ssh(MACHINES[holder], "bash -s", input=WAIT_TOKEN, timeout=120, check=False)
            result["token_seen"] = token.returncode == 0
            t_cut = time.time()
            host_lab.debhosts("kill", MACHINES[holder])
            result["vip_moved_s"] = self.obs.wait(f"the VIP on {other}", lambda: self.vip_on(other), 60, 0.2)
            t_moved = time.time()
            self.hold_validation(False)
            renewed = self.obs.wait(
                f"{other}'s notify run to renew and end",
                lambda: self.live(other) != before and self.unit(other).get("SubState") in
                ("dead", "failed", "auto-restart"), 300, 1)
            t_settled = time.time()
            result["new_holder_renewed_s"] = None if renewed is None else round(t_settled - t_moved, 1)
            result["new_holder_unit"] = self.unit(other)
            result["served_while_down"] = self.served()
            t_power = time.time()
            self.lab.power_on()
            result["vip_back_s"] = self.obs.wait(f"the VIP back on {holder}", lambda: self.vip_on(holder), 300, 0.5)
            result["served_at_return"] = self.served()
            result["return_synced_s"] = self.obs.wait(
                f"{holder}'s notify run to end with what {other} has",
                lambda: self.live(holder) == self.live(other) and self.unit(holder).get("SubState") in
                ("dead", "failed", "auto-restart"), 300, 1)
            time.sleep(3)
        finally:
            self.hold_validation(False)
            stats = self.lab.finish_client(ACME_HOST, client)
        result["journal_on_return"] = [line for line in self.journal(holder, str(int(t_power))).splitlines()
                                       if "harbor-ha acme" in line]
        result["adopted_on_return"] = any("adopted" in line for line in result["journal_on_return"])
        result["renewed_by"] = other if result["new_holder_renewed_s"] is not None else None
        result["issued"] = self.issued_since(since)
        result["served_vip"] = self.served()
        # nginx listens on the VIP alone: each LB's certificate is read through the VIP while it holds it.
        result["served"] = {other: result["served_while_down"], holder: result["served_vip"]}
        # The new holder's certificate came due (EXTRA_S after its issuance) before the old one was back: then the
        # old holder's run rightly renews again.
        result["renewed_again_on_return"] = len(result["issued"]) == 2
        result["lives"] = self.lives()
        result["states"] = {lb: self.state(lb) for lb in self.lbs}
        result.update(client_figures(stats, t_cut, t_settled, t_power))
        states = list(result["states"].values())
        final = result["served_vip"]
        result["ok"] = bool(
            result["token_seen"] and result["renewed_by"] == other and final not in (None, before)
            and result["served_while_down"] not in (None, before)
            and (result["served_while_down"] == final or result["renewed_again_on_return"])
            and set(result["lives"].values()) == {final}
            and all(st["live_paired"] and st["lego_paired"] and st["lego_serial"] == final for st in states)
            and len({st["account"] for st in states}) == 1 and states[0]["account"]
            and result["adopted_on_return"] and 1 <= len(result["issued"]) <= 2
            and result["tls_failures"] == 0 and result["outages_outside_events"] == 0)
        log(f"acme: renewal during a failover {result}")
        return result


def client_figures(stats: dict, t_cut: float, t_settled: float, t_power: float) -> dict[str, Any]:
    """What the client through the VIP saw: its failed requests grouped into outages (runs of failures, each from
    the last success before it to the first after it), the cut's outage (`gap_ms`) and the return's, and failures
    that were a certificate the client refused (a wrong or half-installed pair would show there). An outage must
    belong to one of the drill's two events: the cut until the new holder's renewal has ended (`t_settled`: the VIP's
    move, then its nginx reloaded with the new certificate), or the power-on and what follows (preemption, the
    adopted certificate); one before the cut or between the two is `outages_outside_events`. An event may show as two
    outages (a success between its VIP move and its nginx reload): counted by when they were, not how many."""
    requests = sorted(stats.get("requests", []), key=lambda r: r["start"])
    outages: list[tuple[float, float]] = []
    last_ok_end, failing = None, False
    for r in requests:
        if not r["ok"]:
            if not failing:
                failing, start = True, last_ok_end if last_ok_end is not None else r["start"]
            continue
        end = r["start"] + r["ms"] / 1000
        if failing:
            outages.append((start, end))
            failing = False
        last_ok_end = end
    if failing:
        outages.append((start, requests[-1]["start"]))

    def gap(lo: float, hi: float) -> int:
        spans = [b - a for a, b in outages if lo - 1 <= b and a <= hi]
        return round(max(spans) * 1000) if spans else 0

    def during_event(a: float, b: float) -> bool:
        return (t_cut - 1 <= b and a <= t_settled) or t_power - 1 <= b

    reasons = [why for _t, why in stats.get("failures", [])]
    return {"client_requests": stats.get("total", 0), "client_failed": stats.get("failed"),
            "outages": len(outages), "gap_ms": gap(t_cut, t_power), "return_gap_ms": gap(t_power, float("inf")),
            "outage_spans_s": [[round(a - t_cut, 1), round(b - t_cut, 1)] for a, b in outages],
            "outages_outside_events": sum(1 for a, b in outages if not during_event(a, b)),
            "tls_failures": sum(1 for why in reasons if "CERTIFICATE" in why or "SSL" in why),
            "failure_reasons": reasons[:5]}


def run_acme(json_path: Path, *, keep: bool, alert: bool = True) -> dict:
    """The whole lab; `alert=False` leaves out the expiry alert (its `for: 10m`): the renewal follows the failed one
    at once."""
    t0 = time.monotonic()
    report: dict[str, Any] = {"apply": "replay of the program's registered commands (labs/hosts/replay.py)",
                              "standins": ["Harbor installer", "NFS (bind mount)",
                                           "DNS: pebble-challtestsrv answers pebble's queries"],
                              "certificate_validity_s": VALIDITY_S}
    lab = HostLab(host_lab.ROOT / "lab")
    lab.tls = {}  # tls.mode acme takes no certificate of the user's (config.py refuses one)
    obs = Observe(lab)
    acme = AcmeLab(lab, obs)
    try:
        lab.boot(len(OBSERVE.machines) + 1)
        lab.prepare_standins(OBSERVE)
        obs.start_receiver()
        pebble = acme.start_pebble()
        values = obs.values()
        values["tls"] = {"mode": "acme", "acme": {
            "directoryUrl": acme.pebble_url, "email": "lab@hostlab.internal", "renewBeforeDays": RENEW_BEFORE_DAYS,
            "caCertificate": pebble["https_ca"]}}
        # The probe of the VIP trusts pebble's root; two days' warning (the certificates live two days and EXTRA_S).
        values["monitoring"]["vipCaCertificate"] = pebble["root"]
        values["monitoring"]["certificateWarningDays"] = WARNING_DAYS
        first = lab.up(values)
        report["apply_ok"], report["apply_s"] = first.ok, round(first.seconds, 1)
        log(f"acme: apply ok={first.ok} in {first.seconds:.1f} s")
        if not first.ok:
            return report
        issued = acme.issuance()
        report["issuance"] = issued
        holder, serial = issued["holder"], issued["serial"]
        if not issued["issued"] or holder is None or serial is None:
            return report
        t_issued = time.time()
        # Due for renewal once the certificate is within two days of its end.
        time.sleep(max(0.0, EXTRA_S + 5 - (time.time() - t_issued)))
        report["failed_renewal"] = acme.failed_renewal(holder, serial)
        # The alert, as a drill: fired by the failing renewal, resolved by the one that works.
        renewal: dict[str, Any] = {}

        def renew() -> None:
            renewal.update(acme.renewal(holder, serial, serial))

        if alert:
            drill = Drill("certificate_expiring", ALERT, {"job": "blackbox-vip"}, lambda: None, renew,
                          # the certificate is due EXTRA_S after issuance, then `for: 10m`, scrape and group wait
                          EXTRA_S + 600 + 300)
            t_drill = time.time()
            # No settling: the renewed certificate, as every one here, is due again EXTRA_S after its issuance.
            fired_alert = obs.run_drill(drill, settle=False)
            fired = fired_alert.pop("fired_s")
            fired_alert["fired_after_issuance_s"] = None if fired is None else round(fired + t_drill - t_issued, 1)
            report["expiry_alert"] = fired_alert
        else:
            renew()
        report["renewal"] = renewal
        if renewal.get("renewed"):
            report["other_lb"] = acme.from_the_other_lb(holder)
        report["push_key"] = acme.push_key_restricted(acme.holder() or holder)
        if report.get("other_lb", {}).get("ok") and acme.holder() == holder:
            report["renewal_during_failover"] = acme.renewal_during_failover(holder)
    finally:
        host_lab.close_lab(json_path, report, t0, keep=keep)
    print_summary(report)
    return report


def summary(report: dict) -> dict[str, Any]:
    """The issue's `acme` figures, from the report."""
    alert = report.get("expiry_alert", {})
    failed = report.get("failed_renewal", {})
    drill = report.get("renewal_during_failover", {})
    return {"issued": bool(report.get("issuance", {}).get("issued")),
            "renewed_on_both_lbs": bool(report.get("renewal", {}).get("renewed") and report.get("other_lb", {})
                                        .get("ok")),
            "renewal_during_failover": bool(drill.get("ok")),
            "renewal_during_failover_details": {k: drill.get(k) for k in (
                "kind", "gap_ms", "return_gap_ms", "client_requests", "client_failed", "outages", "outage_spans_s",
                "outages_outside_events", "tls_failures",
                "renewed_by", "served", "adopted_on_return", "issued")},
            "failed_renewal_kept_serving": bool(failed.get("kept_serving") and failed.get("retry_scheduled")
                                                and failed.get("start_rc")),
            "expiry_alert_fired_s": alert.get("fired_after_issuance_s"),
            "expiry_alert_resolved_s": alert.get("resolved_s"), "other_alerts": alert.get("other_alerts"),
            "push_key_restricted": bool(report.get("push_key", {}).get("ok"))}


def figures(report: dict) -> dict[str, Any]:
    """The `acme` figures of `host_lab.py observe --json` (the issue's three, and the failover's details)."""
    s = summary(report)
    return {k: s[k] for k in ("issued", "renewed_on_both_lbs", "renewal_during_failover",
                              "renewal_during_failover_details")}


def print_summary(report: dict) -> None:
    print(f"apply ok: {report.get('apply_ok')} in {report.get('apply_s')} s; certificates live "
          f"{report['certificate_validity_s']} s")
    for key, value in summary(report).items():
        print(f"{key:<28} {value}")
    print(f"seconds: {report.get('seconds')}")


def passed(report: dict, *, alert: bool = True) -> bool:
    s = summary(report)
    return bool(report.get("apply_ok") and s["issued"] and s["renewed_on_both_lbs"] and s["renewal_during_failover"]
                and s["failed_renewal_kept_serving"] and s["push_key_restricted"]
                and (not alert or (s["expiry_alert_fired_s"] is not None and s["expiry_alert_resolved_s"] is not None
                                   and not s["other_alerts"])))
