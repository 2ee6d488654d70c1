//! The replica set from configuration: stable names `<prefix>-<ordinal>` (as a StatefulSet gives)
//! mapped to Raft ids `ordinal + 1`, and where each replica listens. Every replica uses the same
//! ports (node QUIC, Raft QUIC, admin HTTP) on its own host, so a peer is named by its host.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// One replica's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub host: String,
    pub raft_addr: String,
    pub node_addr: String,
    pub admin_addr: String,
}

/// All replicas by Raft id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<u64, Peer>);

/// Raft id of a replica name: `coord-0` -> 1, `mcdnn-coordinator-2` -> 3.
pub fn id_of(name: &str) -> anyhow::Result<u64> {
    let ordinal = name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .with_context(|| format!("replica name {name:?} must end in -<ordinal> (e.g. coord-0), as StatefulSet pods do"))?;
    Ok(ordinal + 1)
}

fn port_of(addr: &str) -> anyhow::Result<u16> {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("{addr:?} has no port"))
}

/// Splits `host:ports` or `[v6]:ports` into the host and the rest after its first colon.
fn split_host(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').unwrap_or(tail)),
            None => (rest, ""),
        };
    }
    s.split_once(':').unwrap_or((s, ""))
}

/// `host` with IPv6 literals bracketed.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Peers {
    /// Parses `name=host,name=host,...`; ports come from this replica's own listen addresses.
    pub fn parse(
        spec: &str,
        node_listen: &str,
        raft_listen: &str,
        admin_listen: &str,
    ) -> anyhow::Result<Self> {
        let (node_port, raft_port, admin_port) = (
            port_of(node_listen)?,
            port_of(raft_listen)?,
            port_of(admin_listen)?,
        );
        let mut peers = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, host) = part
                .split_once('=')
                .with_context(|| format!("--peers entry {part:?} is not name=host"))?;
            let host = host.trim();
            if host.is_empty() {
                bail!("--peers entry {part:?} has no host");
            }
            let id = id_of(name)?;
            let peer = Peer {
                id,
                name: name.to_string(),
                host: host.to_string(),
                raft_addr: join(host, raft_port),
                node_addr: join(host, node_port),
                admin_addr: join(host, admin_port),
            };
            if peers.insert(id, peer).is_some() {
                bail!("--peers names ordinal {} twice", id - 1);
            }
        }
        Ok(Peers(peers))
    }

    pub fn ids(&self) -> Vec<u64> {
        self.0.keys().copied().collect()
    }

    /// Applies `--advertise NAME=HOST[:NODE_PORT[:ADMIN_PORT]],...`: the addresses cameras and
    /// operators outside the cluster reach each replica at (a per-pod load balancer, a node
    /// port), used in every redirect to the leader. Raft keeps the internal addresses. Every
    /// replica gets the same list, so a follower can send anyone to the leader's outside address.
    pub fn with_advertised(mut self, spec: &str) -> anyhow::Result<Self> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, target) = part
                .split_once('=')
                .with_context(|| format!("--advertise entry {part:?} is not NAME=HOST"))?;
            let peer = self
                .0
                .values_mut()
                .find(|p| p.name == name.trim())
                .with_context(|| format!("--advertise names {name:?}, which is not in --peers"))?;
            let (host, ports) = split_host(target.trim());
            if host.is_empty() {
                bail!("--advertise entry {part:?} has no host");
            }
            let mut ports = ports.split(':').filter(|p| !p.is_empty()).map(|p| {
                p.parse::<u16>()
                    .with_context(|| format!("--advertise entry {part:?}: {p:?} is not a port"))
            });
            let node_port = ports
                .next()
                .transpose()?
                .unwrap_or(port_of(&peer.node_addr)?);
            let admin_port = ports
                .next()
                .transpose()?
                .unwrap_or(port_of(&peer.admin_addr)?);
            peer.node_addr = join(host, node_port);
            peer.admin_addr = join(host, admin_port);
        }
        Ok(self)
    }

    pub fn get(&self, id: u64) -> Option<&Peer> {
        self.0.get(&id)
    }

    /// Raft id of the replica configured under exactly `name` (a certificate's name). Matching
    /// on the whole name, not the ordinal alone, keeps `evil-1` from passing for `coord-1`.
    pub fn id_by_name(&self, name: &str) -> Option<u64> {
        self.0.values().find(|p| p.name == name).map(|p| p.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statefulset_style_peers() {
        let p = Peers::parse(
            "coord-0=10.0.0.1, coord-1=coord-1.svc,coord-2=::1",
            "0.0.0.0:7400",
            "0.0.0.0:7500",
            "0.0.0.0:7480",
        )
        .expect("peers");
        assert_eq!(p.ids(), vec![1, 2, 3]);
        let c1 = p.get(2).expect("coord-1");
        assert_eq!(
            (
                c1.raft_addr.as_str(),
                c1.node_addr.as_str(),
                c1.admin_addr.as_str()
            ),
            ("coord-1.svc:7500", "coord-1.svc:7400", "coord-1.svc:7480")
        );
        assert_eq!(p.get(3).map(|p| p.raft_addr.as_str()), Some("[::1]:7500"));
    }

    #[test]
    fn bad_peer_specs_are_clear_errors() {
        assert!(id_of("coordinator").is_err());
        assert_eq!(id_of("mcdnn-coordinator-4").expect("id"), 5);
        assert!(Peers::parse("coord-0", "a:1", "a:2", "a:3").is_err());
        assert!(Peers::parse("coord-0=h,coord-0=g", "a:1", "a:2", "a:3").is_err());
        assert!(Peers::parse("coord-0=h", "a", "a:2", "a:3").is_err());
    }

    #[test]
    fn peers_are_matched_on_their_full_name() {
        let p = Peers::parse("coord-0=h0,coord-1=h1", "a:1", "a:2", "a:3").expect("peers");
        assert_eq!(p.id_by_name("coord-1"), Some(2));
        assert_eq!(p.id_by_name("evil-1"), None, "same ordinal, other name");
        assert_eq!(p.id_by_name("coord-1x"), None);
        assert_eq!(p.id_by_name("xcoord-1"), None);
    }

    #[test]
    fn advertised_addresses_replace_redirect_targets_not_raft() {
        let p = Peers::parse(
            "coord-0=in0,coord-1=in1",
            "0.0.0.0:7400",
            "0.0.0.0:7500",
            "0.0.0.0:7480",
        )
        .expect("peers")
        .with_advertised("coord-1=cams.example.org:31400:31480, coord-0=[2001:db8::1]")
        .expect("advertise");
        let c1 = p.get(2).expect("coord-1");
        assert_eq!(c1.node_addr, "cams.example.org:31400");
        assert_eq!(c1.admin_addr, "cams.example.org:31480");
        assert_eq!(c1.raft_addr, "in1:7500", "raft stays inside");
        assert_eq!(p.get(1).expect("coord-0").node_addr, "[2001:db8::1]:7400");
        let peers = Peers::parse("coord-0=in0", "a:1", "a:2", "a:3").expect("peers");
        assert!(
            peers.clone().with_advertised("coord-9=x").is_err(),
            "unknown replica"
        );
        assert!(
            peers.clone().with_advertised("coord-0=x:port").is_err(),
            "bad port"
        );
        assert!(peers.with_advertised("coord-0").is_err(), "no host");
    }
}
