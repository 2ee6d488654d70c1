//! Face specialisation: the few identities a camera saw in the last minutes, kept as a small
//! gallery of descriptors from a cheaper network, each labelled with what the general variant
//! answered for that person. A later face close enough to one of them is answered from the
//! gallery without running the general variant (MCDNN's specialised model for the classes that
//! dominate the stream; a miss is its "other" and falls back).
//!
//! The gallery is generic over the label so the node can store its answer (watchlist label and
//! name) and the evaluation its own. It lives in memory only and forgets an identity not seen
//! for `window_s`: a stolen camera holds no lasting record of who it saw.

use std::collections::VecDeque;

use super::describe::distance;

/// Descriptors kept per identity: several views of one person (turning head, lighting) match
/// better than one, and a bounded number keeps lookups a few hundred distances at most.
pub const VIEWS_PER_IDENTITY: usize = 16;

/// How far from the watchlist's threshold a general answer must be to be remembered: a person
/// whose distance to a watchlist entry sits on the line (the reference itself flips between
/// the name and unknown from frame to frame) is not cached, and always goes to the general
/// variant.
pub const CONFIDENT_MARGIN: f32 = 0.1;

/// Whether a face `distance` from its nearest watchlist entry (matched within `threshold`)
/// is answered confidently enough to be remembered.
pub fn confident(distance: f32, threshold: f32) -> bool {
    (distance - threshold).abs() >= CONFIDENT_MARGIN
}

/// How many identities the gallery holds, how close a face must be, and for how long a person
/// is remembered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentLimits {
    pub identities: usize,
    /// Largest distance (in the cheap network's own descriptor space) that counts as a hit.
    pub threshold: f32,
    pub window_s: f64,
}

struct Identity<L> {
    key: String,
    label: L,
    views: VecDeque<Vec<f32>>,
    last_seen_s: f64,
}

/// A hit: the remembered identity's key and label, and how far the face was from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a, L> {
    pub key: &'a str,
    pub label: &'a L,
    pub distance: f32,
}

pub struct RecentGallery<L> {
    limits: RecentLimits,
    identities: Vec<Identity<L>>,
}

impl<L> RecentGallery<L> {
    pub fn new(limits: RecentLimits) -> Self {
        Self {
            limits,
            identities: Vec::new(),
        }
    }

    pub fn limits(&self) -> RecentLimits {
        self.limits
    }

    /// Identities remembered now.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Forgets everyone (the labels changed meaning, e.g. a new watchlist).
    pub fn clear(&mut self) {
        self.identities.clear();
    }

    /// Forgets identities not seen within the window before `now_s`.
    pub fn expire(&mut self, now_s: f64) {
        let window = self.limits.window_s;
        self.identities.retain(|i| now_s - i.last_seen_s <= window);
    }

    /// The nearest remembered identity within the threshold, marked as seen at `now_s`.
    pub fn lookup(&mut self, now_s: f64, descriptor: &[f32]) -> Option<Hit<'_, L>> {
        self.expire(now_s);
        let (index, d) = self
            .identities
            .iter()
            .enumerate()
            .flat_map(|(i, id)| id.views.iter().map(move |v| (i, distance(v, descriptor))))
            .filter(|(_, d)| *d <= self.limits.threshold)
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        let id = &mut self.identities[index];
        id.last_seen_s = now_s;
        Some(Hit {
            key: &id.key,
            label: &id.label,
            distance: d,
        })
    }

    /// Remembers `descriptor` as a view of identity `key` answered `label` (the label replaces
    /// the one kept: the general variant's newest answer is the truth). A new identity beyond
    /// the limit evicts the one seen longest ago.
    pub fn remember(&mut self, now_s: f64, key: &str, label: L, descriptor: Vec<f32>) {
        self.expire(now_s);
        if let Some(id) = self.identities.iter_mut().find(|i| i.key == key) {
            if id.views.len() == VIEWS_PER_IDENTITY {
                id.views.pop_front();
            }
            id.views.push_back(descriptor);
            id.label = label;
            id.last_seen_s = now_s;
            return;
        }
        if self.limits.identities == 0 {
            return;
        }
        if self.identities.len() >= self.limits.identities
            && let Some(oldest) = self
                .identities
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.last_seen_s.total_cmp(&b.1.last_seen_s))
                .map(|(i, _)| i)
        {
            self.identities.swap_remove(oldest);
        }
        self.identities.push(Identity {
            key: key.to_string(),
            label,
            views: VecDeque::from([descriptor]),
            last_seen_s: now_s,
        });
    }
}

/// Names the people nobody put on the watchlist, so a stream of one stranger can be told from
/// a stream of many: each unknown face joins the nearest stranger seen recently (same distance
/// rule as the watchlist, in the general variant's space) or becomes a new one. The keys feed
/// the skew window that tells the scheduler how few identities dominate the stream.
pub struct Strangers {
    seen: RecentGallery<u64>,
    next: u64,
}

/// Strangers remembered at once: a crowd beyond this just keeps making new keys.
pub const STRANGERS: usize = 64;
/// Tighter than the watchlist's 0.6 so two strangers 0.5-0.6 apart stay two people.
pub const STRANGER_DISTANCE: f32 = 0.5;

impl Strangers {
    pub fn new(threshold: f32, window_s: f64) -> Self {
        Self {
            seen: RecentGallery::new(RecentLimits {
                identities: STRANGERS,
                threshold,
                window_s,
            }),
            next: 0,
        }
    }

    /// The key of the stranger `descriptor` belongs to (`stranger#N`).
    pub fn key(&mut self, now_s: f64, descriptor: &[f32]) -> String {
        if let Some(hit) = self.seen.lookup(now_s, descriptor) {
            let key = hit.key.to_string();
            let label = *hit.label;
            self.seen.remember(now_s, &key, label, descriptor.to_vec());
            return key;
        }
        let id = self.next;
        self.next += 1;
        let key = format!("stranger#{id}");
        self.seen.remember(now_s, &key, id, descriptor.to_vec());
        key
    }

    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32) -> Vec<f32> {
        let mut d = vec![0.0; 4];
        d[0] = x;
        d
    }

    fn limits(identities: usize) -> RecentLimits {
        RecentLimits {
            identities,
            threshold: 0.3,
            window_s: 60.0,
        }
    }

    #[test]
    fn a_face_near_a_remembered_identity_hits_with_its_label() {
        let mut g = RecentGallery::new(limits(4));
        g.remember(0.0, "ann", 7u32, at(0.0));
        g.remember(0.0, "bob", 9u32, at(1.0));
        let hit = g.lookup(1.0, &at(0.9)).expect("bob is near");
        assert_eq!((hit.key, *hit.label), ("bob", 9));
        assert!((hit.distance - 0.1).abs() < 1e-6);
        assert!(
            g.lookup(1.0, &at(0.5)).is_none(),
            "0.5 is beyond 0.3 of both"
        );
    }

    #[test]
    fn identities_beyond_the_limit_evict_the_one_seen_longest_ago() {
        let mut g = RecentGallery::new(limits(2));
        g.remember(0.0, "ann", 1u32, at(0.0));
        g.remember(1.0, "bob", 2u32, at(1.0));
        assert!(g.lookup(2.0, &at(0.0)).is_some(), "ann seen again at 2");
        g.remember(3.0, "cat", 3u32, at(2.0));
        assert_eq!(g.len(), 2);
        assert!(g.lookup(4.0, &at(1.0)).is_none(), "bob was the stalest");
        assert!(g.lookup(4.0, &at(0.0)).is_some());
        assert!(g.lookup(4.0, &at(2.0)).is_some());
    }

    #[test]
    fn people_not_seen_within_the_window_are_forgotten() {
        let mut g = RecentGallery::new(limits(4));
        g.remember(0.0, "ann", 1u32, at(0.0));
        assert!(g.lookup(60.0, &at(0.0)).is_some());
        assert!(g.lookup(121.0, &at(0.0)).is_none(), "last seen at 60");
        assert!(g.is_empty());
    }

    #[test]
    fn an_identity_keeps_its_newest_views_and_label() {
        let mut g = RecentGallery::new(limits(4));
        for k in 0..=VIEWS_PER_IDENTITY {
            g.remember(k as f64, "ann", k as u32, at(k as f32));
        }
        let now = VIEWS_PER_IDENTITY as f64 + 1.0;
        assert!(
            g.lookup(now, &at(0.0)).is_none(),
            "the first view was dropped"
        );
        let newest = Some(VIEWS_PER_IDENTITY as u32);
        assert_eq!(g.lookup(now, &at(1.0)).map(|h| *h.label), newest);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn answers_near_the_watchlist_line_are_not_confident() {
        assert!(confident(0.3, 0.6));
        assert!(confident(0.75, 0.6));
        assert!(
            confident(f32::INFINITY, 0.6),
            "an empty watchlist: surely unknown"
        );
        assert!(!confident(0.55, 0.6));
        assert!(!confident(0.65, 0.6));
    }

    #[test]
    fn strangers_get_one_key_per_person() {
        let mut s = Strangers::new(0.3, 60.0);
        let a = s.key(0.0, &at(0.0));
        let b = s.key(1.0, &at(1.0));
        assert_ne!(a, b);
        assert_eq!(s.key(2.0, &at(0.1)), a);
        assert_eq!(s.key(3.0, &at(1.2)), b);
        s.clear();
        assert_ne!(s.key(4.0, &at(0.0)), a, "forgotten after clear");
    }
}
