"""tls.mode acme on real Debian 12 hosts (labs/hosts/host_lab.py acme, labs/hosts/acme_hosts.py): pebble from Debian's
package on a lab host outside the stack, the loadbalancer role's harbor-ha-acme unit obtaining the VIP's certificate
through the program's files and pushing it to the other LB over sshd, a failed renewal kept harmless, the monitoring
role's CertificateExpiringSoon fired by a certificate within two days of its end and resolved by the renewal, a
renewal from the other LB after a failover, the push key's authorized_keys restrictions, and the VIP holder's power
cut in the middle of its renewal (the other LB renews, the old holder adopts). Harbor and NFS are stand-ins.
Slow (about 25 min: the alert's `for: 10m`): marker `acme_hosts`. Environment: HHA_ROOT, HHA_BRIDGE, HHA_NET."""

from __future__ import annotations

import pytest

from labs.hosts import acme_hosts

pytestmark = pytest.mark.acme_hosts


@pytest.fixture(scope="module")
def report(lab_report) -> dict:
    return lab_report("acme", lambda path: acme_hosts.run_acme(path, keep=False))


def test_acme_mode_applies_and_the_vip_serves_pebbles_certificate_from_both_lbs(report):
    assert report["apply_ok"], report
    assert report["issuance"]["issued"], report["issuance"]


def test_a_failed_renewal_is_retried_later_and_the_current_certificate_stays_served(report):
    failed = report["failed_renewal"]
    assert failed["start_rc"] != 0 and failed["retry_scheduled"], failed
    assert failed["kept_serving"], failed


def test_the_expiry_alert_fires_for_a_certificate_due_and_resolves_after_the_renewal(report):
    alert = report["expiry_alert"]
    assert alert["fired_after_issuance_s"] is not None and alert["resolved_s"] is not None, alert
    assert alert["other_alerts"] == [], alert
    assert report["renewal"]["renewed"], report["renewal"]


def test_the_other_lb_serves_renews_after_a_failover_and_pushes_back(report):
    assert report["other_lb"]["ok"], report["other_lb"]


def test_the_push_key_runs_only_receive_and_only_from_the_peer(report):
    assert report["push_key"]["ok"], report["push_key"]


def test_a_power_cut_of_the_vip_holder_during_its_renewal_leaves_one_certificate_on_both_lbs(report):
    """The holder cut inside its order; the new holder renews; the old one back adopts that certificate; every pair
    matches, one account, and the client through the VIP saw the failover's gap (and the return's) and no refused
    certificate."""
    drill = report["renewal_during_failover"]
    assert drill["ok"], drill
    assert acme_hosts.summary(report)["renewal_during_failover"], drill
    assert drill["tls_failures"] == 0 and drill["outages_outside_events"] == 0, drill
