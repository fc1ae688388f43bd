"""The figures `host_lab.py acme` (labs/hosts/acme_hosts.py) takes from its client through the VIP, and the `acme`
figures `host_lab.py observe` carries from the acme lab's report."""

from __future__ import annotations

from labs.hosts import acme_hosts


def req(start: float, ok: bool = True, ms: float = 100.0) -> dict:
    return {"start": start, "ms": ms, "ok": ok}


def test_the_failover_and_the_return_are_each_one_outage_from_the_last_success_to_the_next():
    requests = [req(99.0), req(100.0), req(100.2, False, 5000), req(105.3, False, 1000), req(106.5), req(107.0),
                req(200.0), req(200.5, False, 300), req(201.0)]
    stats = {"total": len(requests), "failed": 3, "requests": requests,
             "failures": [[1.0, "TimeoutError('timed out')"], [6.0, "URLError(ConnectionRefusedError(111))"],
                          [101.0, "RemoteDisconnected('closed')"]]}
    got = acme_hosts.client_figures(stats, t_cut=100.15, t_settled=130.0, t_power=150.0)
    assert got["outages"] == 2 and got["client_failed"] == 3 and got["tls_failures"] == 0, got
    assert got["gap_ms"] == 6500 and got["return_gap_ms"] == 1000, got  # 100.1 -> 106.6; 200.1 -> 201.1
    assert got["outages_outside_events"] == 0 and got["outage_spans_s"] == [[-0.1, 6.4], [99.9, 100.9]], got


def test_an_outage_between_the_new_holders_renewal_and_the_power_on_is_outside_the_events():
    """The cut's outage split in two by one success (still the cut's event), and one while the other LB serves
    alone, after its renewal: that one is counted against the drill."""
    requests = [req(99.0), req(100.2, False, 5000), req(105.3), req(106.0, False, 200), req(107.0), req(120.0),
                req(139.8), req(140.0, False, 5000), req(145.1), req(150.5, False, 300), req(151.0)]
    stats = {"total": len(requests), "failed": 4, "requests": requests, "failures": []}
    got = acme_hosts.client_figures(stats, t_cut=100.15, t_settled=130.0, t_power=150.0)
    assert got["outages"] == 4 and got["outages_outside_events"] == 1, got


def test_a_refused_certificate_is_counted_apart():
    stats = {"total": 2, "failed": 1, "requests": [req(1.0, False), req(2.0)],
             "failures": [[0.0, "URLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]'))"]]}
    got = acme_hosts.client_figures(stats, t_cut=0.5, t_settled=5.0, t_power=10.0)
    assert got["tls_failures"] == 1 and got["outages"] == 1, got


def test_observe_carries_the_three_figures_and_the_failovers_details():
    report = {"apply_ok": True, "issuance": {"issued": True}, "renewal": {"renewed": True}, "other_lb": {"ok": True},
              "failed_renewal": {"kept_serving": True, "retry_scheduled": True, "start_rc": 1},
              "push_key": {"ok": True},
              "renewal_during_failover": {"ok": True, "gap_ms": 4200, "renewed_by": "node2",
                                          "served": {"node2": "0A", "node1": "0A"}, "tls_failures": 0}}
    got = acme_hosts.figures(report)
    assert (got["issued"], got["renewed_on_both_lbs"], got["renewal_during_failover"]) == (True, True, True)
    assert got["renewal_during_failover_details"]["gap_ms"] == 4200
    assert acme_hosts.passed(report, alert=False) and not acme_hosts.passed(report)  # no expiry alert in it
    report["renewal_during_failover"]["ok"] = False
    assert not acme_hosts.figures(report)["renewal_during_failover"] and not acme_hosts.passed(report, alert=False)
