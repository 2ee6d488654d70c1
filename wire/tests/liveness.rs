//! The leader's ping interval follows the fleet's size within its bounds, and a node takes only
//! intervals within them.

use std::time::Duration;

use mcdnn_wire::msg::{
    LIVENESS_PING_INTERVAL, LIVENESS_PINGS_PER_S, MAX_LIVENESS_PING_INTERVAL,
    check_liveness_interval, liveness_ping_interval,
};

#[test]
fn small_fleets_ping_at_the_shortest_interval() {
    for n in [0, 1, 10, LIVENESS_PINGS_PER_S / 5] {
        assert_eq!(
            liveness_ping_interval(n),
            LIVENESS_PING_INTERVAL,
            "{n} nodes"
        );
    }
}

#[test]
fn the_fleets_pings_stay_within_the_budget_until_the_longest_interval() {
    for n in (0..=LIVENESS_PINGS_PER_S * 3).step_by(97) {
        let interval = liveness_ping_interval(n);
        assert!(interval >= LIVENESS_PING_INTERVAL && interval <= MAX_LIVENESS_PING_INTERVAL);
        assert_eq!(interval.as_millis() % 100, 0, "steps of 100 ms");
        let pings_per_s = n as f64 / interval.as_secs_f64();
        if interval < MAX_LIVENESS_PING_INTERVAL {
            assert!(
                pings_per_s <= LIVENESS_PINGS_PER_S as f64,
                "{n} nodes at {interval:?}"
            );
        }
    }
    assert_eq!(liveness_ping_interval(1001), Duration::from_millis(300));
    assert_eq!(liveness_ping_interval(2000), Duration::from_millis(400));
    assert_eq!(liveness_ping_interval(10_000), MAX_LIVENESS_PING_INTERVAL);
    assert_eq!(
        liveness_ping_interval(usize::MAX / 2000),
        MAX_LIVENESS_PING_INTERVAL
    );
}

#[test]
fn a_node_refuses_intervals_outside_the_bounds() {
    assert_eq!(check_liveness_interval(200), Ok(LIVENESS_PING_INTERVAL));
    assert_eq!(
        check_liveness_interval(1000),
        Ok(MAX_LIVENESS_PING_INTERVAL)
    );
    for bad in [0, 1, 199, 1001, u32::MAX] {
        let e = check_liveness_interval(bad).unwrap_err();
        assert!(e.contains("outside 200..=1000 ms"), "{e}");
    }
}
