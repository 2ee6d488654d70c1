//! One option table and its hulls: the per-group geometry the greedy walks at given prices.

use super::*;

/// A shared option table; many groups (e.g. every node of a device class) may point to one.
#[derive(Debug, Clone)]
pub struct Table {
    pub(super) opts: Vec<Opt>,
    /// Upper hull of the options that use no priced resource (independent of prices).
    pub(super) static_hull: Vec<Pt>,
    /// Priced options grouped by equal energy, ascending: only the best one per bucket matters.
    pub(super) buckets: Vec<(f64, Vec<u32>)>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Pt {
    pub(super) e: f64,
    pub(super) v: f64,
    pub(super) opt: u32,
}

pub(super) const ORIGIN: Pt = Pt {
    e: 0.0,
    v: 0.0,
    opt: DROP,
};

/// Adds `p` (energies non-decreasing) to an increasing upper concave hull.
pub(super) fn push_hull(h: &mut Vec<Pt>, p: Pt) {
    push_hull_from(h, 0, p);
}

/// [`push_hull`] on the hull `h[base..]` (what precedes `base` is another hull, left alone).
fn push_hull_from(h: &mut Vec<Pt>, base: usize, p: Pt) {
    let Some(&last) = h[base..].last() else {
        h.push(p);
        return;
    };
    if p.v <= last.v {
        return; // more energy, no more value: never worth it
    }
    if p.e <= last.e {
        h.pop();
    }
    while h.len() >= base + 2 {
        let a = h[h.len() - 2];
        let b = h[h.len() - 1];
        if (b.v - a.v) * (p.e - a.e) <= (p.v - a.v) * (b.e - a.e) {
            h.pop();
        } else {
            break;
        }
    }
    h.push(p);
}

impl Table {
    /// Compiles options; options with negative or non-finite figures are ignored.
    pub fn new(opts: Vec<Opt>) -> Table {
        let ok = |o: &Opt| {
            [o.value, o.energy, o.cost, o.server]
                .iter()
                .all(|x| x.is_finite() && *x >= 0.0)
        };
        let mut statics: Vec<u32> = (0..opts.len() as u32)
            .filter(|&i| {
                let o = &opts[i as usize];
                ok(o) && o.cost == 0.0 && o.server == 0.0
            })
            .collect();
        statics.sort_by(|&a, &b| {
            let (oa, ob) = (&opts[a as usize], &opts[b as usize]);
            oa.energy
                .total_cmp(&ob.energy)
                .then(ob.value.total_cmp(&oa.value))
        });
        let mut static_hull = vec![ORIGIN];
        for i in statics {
            let o = &opts[i as usize];
            push_hull(
                &mut static_hull,
                Pt {
                    e: o.energy,
                    v: o.value,
                    opt: i,
                },
            );
        }
        let mut priced: Vec<u32> = (0..opts.len() as u32)
            .filter(|&i| {
                let o = &opts[i as usize];
                ok(o) && (o.cost > 0.0 || o.server > 0.0)
            })
            .collect();
        priced.sort_by(|&a, &b| opts[a as usize].energy.total_cmp(&opts[b as usize].energy));
        let mut buckets: Vec<(f64, Vec<u32>)> = Vec::new();
        for i in priced {
            let e = opts[i as usize].energy;
            match buckets.last_mut() {
                Some((be, list)) if *be == e => list.push(i),
                _ => buckets.push((e, vec![i])),
            }
        }
        Table {
            opts,
            static_hull,
            buckets,
        }
    }

    /// The options as given.
    pub fn opts(&self) -> &[Opt] {
        &self.opts
    }

    /// The priced options worth anything at cost price `mu`, by energy bucket: in each bucket
    /// the best one per server use, and more server use only for more value (whatever the server
    /// price, nothing else in the bucket can be the best).
    pub(super) fn priced(&self, mu: f64, out: &mut Vec<PPt>) {
        out.clear();
        for (e, list) in &self.buckets {
            let first = out.len();
            for &i in list {
                let o = &self.opts[i as usize];
                let v = o.value - mu * o.cost;
                if v > 0.0 {
                    out.push(PPt {
                        e: *e,
                        v,
                        server: o.server,
                        opt: i,
                    });
                }
            }
            let bucket = &mut out[first..];
            bucket.sort_by(|a, b| {
                a.server
                    .total_cmp(&b.server)
                    .then(b.v.total_cmp(&a.v))
                    .then(a.opt.cmp(&b.opt))
            });
            let mut keep = first;
            let mut top = f64::NEG_INFINITY;
            for k in first..out.len() {
                if out[k].v > top {
                    top = out[k].v;
                    out[keep] = out[k];
                    keep += 1;
                }
            }
            out.truncate(keep);
        }
    }

    /// Appends the hull at server price `nu_per_request` to `out` (what `out` held stays, as
    /// another group's hull), built from the static hull and this table's `priced` options.
    ///
    /// Hot: a million-node fleet builds three million hulls per price pair. The static hull is
    /// already concave, so once two consecutive static points sit on the new hull, every static
    /// point up to the next priced one does too and is copied without tests; with nothing
    /// priced the static hull is the hull.
    pub(super) fn hull_into(&self, priced: &[PPt], nu_per_request: f64, out: &mut Vec<Pt>) {
        let sh = &self.static_hull;
        if priced.is_empty() {
            out.extend_from_slice(sh);
            return;
        }
        let base = out.len();
        let mut si = 0;
        let mut pi = 0;
        while si < sh.len() || pi < priced.len() {
            if pi >= priced.len() || (si < sh.len() && sh[si].e <= priced[pi].e) {
                push_hull_from(out, base, sh[si]);
                si += 1;
                let n = out.len();
                let settled = si >= 2
                    && n >= base + 2
                    && out[n - 1].opt == sh[si - 1].opt
                    && out[n - 2].opt == sh[si - 2].opt;
                if settled {
                    let until = match priced.get(pi) {
                        Some(p) => si + sh[si..].partition_point(|s| s.e <= p.e),
                        None => sh.len(),
                    };
                    out.extend_from_slice(&sh[si..until]);
                    si = until;
                }
                continue;
            }
            let e = priced[pi].e;
            let mut best = Pt {
                e,
                v: 0.0,
                opt: DROP,
            };
            while pi < priced.len() && priced[pi].e == e {
                let p = &priced[pi];
                let v = p.v - nu_per_request * p.server;
                if v > best.v {
                    best = Pt { e, v, opt: p.opt };
                }
                pi += 1;
            }
            if best.opt != DROP {
                push_hull_from(out, base, best);
            }
        }
    }
}

/// A priced option at a given cost price.
#[derive(Debug, Clone, Copy)]
pub(super) struct PPt {
    pub(super) e: f64,
    pub(super) v: f64,
    pub(super) server: f64,
    pub(super) opt: u32,
}
