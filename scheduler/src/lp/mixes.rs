//! Per-group pure choices and the mixed plan, in flat arrays: a million-node fleet has three
//! million groups, and a small vector per group was three million allocations per solve.

use super::DROP;

/// One group's pure choice at one price pair: `here` for `1 - frac` of its requests and `next`
/// for `frac` (the greedy's one partial step), or `here` alone (`next == DROP`, `frac == 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pick {
    pub(super) here: u32,
    pub(super) next: u32,
    pub(super) frac: f64,
}

impl Default for Pick {
    fn default() -> Self {
        Pick {
            here: DROP,
            next: DROP,
            frac: 0.0,
        }
    }
}

impl Pick {
    pub(super) fn whole(here: u32) -> Pick {
        Pick {
            here,
            ..Pick::default()
        }
    }

    fn shares(&self) -> [(u32, f64); 2] {
        [(self.here, 1.0 - self.frac), (self.next, self.frac)]
    }
}

/// Per group, a mix of options and the fraction of its requests each takes (the rest is
/// dropped): `mixes[g]` is group `g`'s, in the order the parts first chose each option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mixes {
    /// Group `g`'s entries are `entries[starts[g]..starts[g + 1]]`.
    starts: Vec<u32>,
    entries: Vec<(u32, f64)>,
}

impl Mixes {
    /// Combines pure choices for `groups` groups: `parts` are (weight, one pick per group).
    /// With no parts every group is dropped.
    pub(super) fn combine(groups: usize, parts: &[(f64, Vec<Pick>)]) -> Mixes {
        let mut m = Mixes {
            starts: Vec::with_capacity(groups + 1),
            entries: Vec::with_capacity(groups * 2),
        };
        m.starts.push(0);
        for gi in 0..groups {
            let first = m.entries.len();
            for (w, picks) in parts {
                for (opt, f) in picks[gi].shares() {
                    if opt == DROP || f <= 0.0 {
                        continue;
                    }
                    match m.entries[first..].iter_mut().find(|(o, _)| *o == opt) {
                        Some(e) => e.1 += w * f,
                        None => m.entries.push((opt, w * f)),
                    }
                }
            }
            m.starts.push(m.entries.len() as u32);
        }
        m
    }

    /// Groups in the plan.
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Group `g`'s mix; empty (drop everything) past the last group.
    pub fn get(&self, g: usize) -> &[(u32, f64)] {
        match (self.starts.get(g), self.starts.get(g + 1)) {
            (Some(&a), Some(&b)) => &self.entries[a as usize..b as usize],
            _ => &[],
        }
    }

    pub fn iter(&self) -> MixIter<'_> {
        MixIter {
            mixes: self,
            next: 0,
        }
    }
}

impl std::ops::Index<usize> for Mixes {
    type Output = [(u32, f64)];

    fn index(&self, g: usize) -> &[(u32, f64)] {
        assert!(g < self.len(), "group {g} of {}", self.len());
        self.get(g)
    }
}

/// The groups' mixes in group order.
pub struct MixIter<'a> {
    mixes: &'a Mixes,
    next: usize,
}

impl<'a> Iterator for MixIter<'a> {
    type Item = &'a [(u32, f64)];

    fn next(&mut self) -> Option<Self::Item> {
        let g = self.next;
        (g < self.mixes.len()).then(|| {
            self.next += 1;
            self.mixes.get(g)
        })
    }
}

impl<'a> IntoIterator for &'a Mixes {
    type Item = &'a [(u32, f64)];
    type IntoIter = MixIter<'a>;

    fn into_iter(self) -> MixIter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_weighted_and_merged_per_option() {
        let a = vec![
            Pick::whole(3),
            Pick {
                here: 1,
                next: 2,
                frac: 0.25,
            },
            Pick::default(),
        ];
        let b = vec![Pick::whole(4), Pick::whole(2), Pick::default()];
        let m = Mixes::combine(3, &[(0.5, a), (0.5, b)]);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], [(3, 0.5), (4, 0.5)]);
        assert_eq!(m[1], [(1, 0.375), (2, 0.125 + 0.5)]);
        assert!(m[2].is_empty(), "a dropped group has no entries");
        assert!(m.get(3).is_empty());
        assert_eq!(m.iter().count(), 3);
    }

    #[test]
    #[should_panic(expected = "group 1 of 1")]
    fn indexing_past_the_groups_panics() {
        let m = Mixes::combine(1, &[(1.0, vec![Pick::whole(0)])]);
        let _ = &m[1];
    }

    #[test]
    fn no_parts_drop_every_group() {
        let m = Mixes::combine(2, &[]);
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(<[_]>::is_empty));
    }
}
