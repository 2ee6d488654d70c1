//! Pushing a committed plan: only to the sessions whose assignment changed since it was last
//! sent to them (a new session has been sent nothing, so it gets its assignment whatever
//! changed). Each push is stamped with the committed epoch, the plan the node is now on.

use std::time::Instant;

use wire::msg::{Assignment, CoordMsg};

use super::registry::Registry;

/// Queues each planned node's assignment (`holds`, as committed: `epoch` is when it last
/// changed) to its session if it changed after what the session was last sent, stamped with
/// the plan epoch `epoch`. A full queue skips the node; it is pushed after a later commit.
/// Returns how many were queued.
pub fn push_changed(
    registry: &mut Registry,
    holds: &[Assignment],
    epoch: u64,
    committed_at: Instant,
) -> u64 {
    let mut sent = 0;
    for a in holds {
        let Some(entry) = registry.get_mut(&a.node_id) else {
            continue;
        };
        let Some(tx) = entry.tx.as_ref() else {
            continue;
        };
        if a.epoch <= entry.sent_epoch {
            continue;
        }
        let mut stamped = a.clone();
        stamped.epoch = epoch;
        if tx.try_send(CoordMsg::Assignment(stamped)).is_ok() {
            entry.sent_epoch = epoch;
            entry.sent_at = Some(committed_at);
            sent += 1;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{assignment, hello};
    use super::*;
    use tokio::sync::mpsc;
    use wire::msg::Role;

    /// The epochs of the assignments queued (a session is also told its ping interval).
    fn received(rx: &mut mpsc::Receiver<CoordMsg>) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|m| match m {
                CoordMsg::Assignment(a) => Some(a.epoch),
                _ => None,
            })
            .collect()
    }

    /// A node whose assignment did not change gets no push; a changed one and a session that
    /// was never sent its assignment get it, stamped with the committed epoch.
    #[test]
    fn only_changed_or_unsent_assignments_are_pushed() {
        let mut r = Registry::default();
        let now = Instant::now();
        let mut rxs = Vec::new();
        for id in ["same", "moved", "fresh"] {
            let (tx, rx) = mpsc::channel(4);
            r.connect(hello(id, "laptop", Role::Device), tx, now);
            rxs.push(rx);
        }
        // Epoch 1: everyone's assignment is new.
        let first = [
            assignment("same", 1),
            assignment("moved", 1),
            assignment("fresh", 1),
        ];
        assert_eq!(push_changed(&mut r, &first, 1, now), 3);
        for rx in &mut rxs {
            assert_eq!(received(rx), [1]);
        }
        // Epoch 2: only "moved" changed; "fresh" reconnected (a new session was sent nothing).
        let (tx, rx) = mpsc::channel(4);
        r.connect(hello("fresh", "laptop", Role::Device), tx, now);
        rxs[2] = rx;
        let second = [
            assignment("same", 1),
            assignment("moved", 2),
            assignment("fresh", 1),
        ];
        assert_eq!(push_changed(&mut r, &second, 2, now), 2);
        assert_eq!(
            received(&mut rxs[0]),
            Vec::<u64>::new(),
            "unchanged: no push"
        );
        assert_eq!(received(&mut rxs[1]), [2]);
        assert_eq!(received(&mut rxs[2]), [2], "stamped with the plan epoch");
        // Epoch 3 changes nothing: nobody is pushed.
        assert_eq!(push_changed(&mut r, &second, 3, now), 0);
    }
}
