from salescast.stream.core.health import BrokerReachability


def test_an_outage_starts_after_missed_probes_in_a_row_and_ends_at_the_first_answer():
    now = [100.0]
    health = BrokerReachability(misses=2, clock=lambda: now[0])
    assert health.observe(False) is None and health.reachable  # one lost connection is not an outage
    assert health.observe(True) is None and health.unreachable_for_s() == 0.0
    assert health.observe(False) is None
    now[0] = 102.0
    assert health.observe(False) == "lost" and not health.reachable and health.outages == 1
    now[0] = 130.0
    assert health.observe(False) is None and health.unreachable_for_s() == 30.0  # from the first miss
    assert health.observe(True) == "back" and health.reachable and health.unreachable_for_s() == 0.0
    for _ in range(3):
        health.observe(False)
    assert health.outages == 2
