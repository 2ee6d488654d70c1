//! The connection table of one HTTP listener: caps on connections overall and per source
//! address, and room made under a flood. When the table is full, the oldest connection that is
//! not serving a request (still in its TLS handshake, still sending its request head, or idle)
//! is closed to let the new one in, so half-open connections from many addresses cannot lock
//! out a legitimate client; only when every connection is busy with a request is the new one
//! refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Table {
    next_id: u64,
    per_address: HashMap<IpAddr, usize>,
    /// By id, which grows with age: the first idle entry is the oldest.
    conns: BTreeMap<u64, Conn>,
}

struct Conn {
    address: IpAddr,
    /// Requests in flight on this connection.
    busy: usize,
    evict: CancellationToken,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&conn.address) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&conn.address);
            }
        }
        Some(conn)
    }
}

/// Cheap to clone; every clone is the same table.
#[derive(Clone, Default)]
pub struct Slots(Arc<Mutex<Table>>);

/// One admitted connection; dropping it frees its place. `evicted` fires when the table closes
/// it to make room.
pub struct Slot {
    slots: Slots,
    id: u64,
    pub evicted: CancellationToken,
}

/// Marks a request in flight: a busy connection is never evicted.
pub struct Busy {
    slots: Slots,
    id: u64,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `address`, or `None` when that address already holds
    /// `max_per_address` or every one of `max_total` connections is serving a request.
    pub fn take(&self, address: IpAddr, max_total: usize, max_per_address: usize) -> Option<Slot> {
        let mut t = self.lock();
        if t.per_address.get(&address).copied().unwrap_or(0) >= max_per_address {
            return None;
        }
        if t.conns.len() >= max_total {
            let idle = t
                .conns
                .iter()
                .find(|(_, c)| c.busy == 0)
                .map(|(id, _)| *id)?;
            if let Some(old) = t.remove(idle) {
                old.evict.cancel();
            }
        }
        t.next_id += 1;
        let id = t.next_id;
        let evicted = CancellationToken::new();
        t.conns.insert(
            id,
            Conn {
                address,
                busy: 0,
                evict: evicted.clone(),
            },
        );
        *t.per_address.entry(address).or_default() += 1;
        Some(Slot {
            slots: self.clone(),
            id,
            evicted,
        })
    }

    /// Connections admitted and not yet closed.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().conns.len()
    }
}

impl Slot {
    /// A handle that marks requests of this connection busy (for the request service).
    pub fn marker(&self) -> BusyMarker {
        BusyMarker {
            slots: self.slots.clone(),
            id: self.id,
        }
    }
}

/// Clonable: makes [`Busy`] guards for one connection.
#[derive(Clone)]
pub struct BusyMarker {
    slots: Slots,
    id: u64,
}

impl BusyMarker {
    pub fn busy(&self) -> Busy {
        if let Some(c) = self.slots.lock().conns.get_mut(&self.id) {
            c.busy += 1;
        }
        Busy {
            slots: self.slots.clone(),
            id: self.id,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.slots.lock().conns.get_mut(&self.id) {
            c.busy = c.busy.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [127, 0, 0, last].into()
    }

    #[test]
    fn caps_per_address_and_frees_on_drop() {
        let slots = Slots::default();
        let a1 = slots.take(ip(5), 10, 2).expect("first");
        let _a2 = slots.take(ip(5), 10, 2).expect("second");
        assert!(
            slots.take(ip(5), 10, 2).is_none(),
            "a third from one address"
        );
        drop(a1);
        assert!(
            slots.take(ip(5), 10, 2).is_some(),
            "a closed slot is free again"
        );
    }

    #[test]
    fn a_full_table_evicts_the_oldest_idle_connection_never_a_busy_one() {
        let slots = Slots::default();
        let oldest = slots.take(ip(1), 3, 3).expect("1");
        let busy_one = slots.take(ip(2), 3, 3).expect("2");
        let third = slots.take(ip(3), 3, 3).expect("3");
        let _guard = busy_one.marker().busy();
        // Half-open connections from many addresses fill the table; a newcomer still gets in.
        let _new = slots.take(ip(4), 3, 3).expect("room is made");
        assert!(oldest.evicted.is_cancelled(), "the oldest idle one went");
        assert!(
            !busy_one.evicted.is_cancelled(),
            "a connection serving a request stays"
        );
        assert_eq!(slots.open(), 3);
        let _newer = slots.take(ip(6), 3, 3).expect("room again");
        assert!(third.evicted.is_cancelled());
        drop(_new);
        drop(_newer);
        let _g2 = third.marker().busy();
        let all_busy = Slots::default();
        let s = all_busy.take(ip(1), 1, 1).expect("one");
        let _g = s.marker().busy();
        assert!(
            all_busy.take(ip(2), 1, 1).is_none(),
            "every connection busy: refused"
        );
    }
}
