//! Pod addresses. Every pod gets its own loopback address, so two pods can both listen on
//! port 8080 and a test reaches each at its `status.podIP`, as on a real cluster network.
//! Node `n` of a cluster whose network is `127.B` owns `127.B.(n+1).0/24`: the node itself is
//! `.1` and its pods take `.2` to `.254`. The cluster scripts reserve a distinct `B` per cluster,
//! so clusters running side by side never hand out the same address.

use std::{collections::BTreeSet, net::Ipv4Addr};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNetwork {
    second_octet: u8,
}

impl PodNetwork {
    /// Parses `127.B`, the form the cluster scripts pass on the command line.
    pub fn parse(network: &str) -> Result<Self> {
        let invalid = |message: &str| Error::PodNetwork {
            network: network.to_owned(),
            message: message.to_owned(),
        };
        let second = network
            .strip_prefix("127.")
            .ok_or_else(|| invalid("must be 127.B (a loopback /16)"))?;
        let second_octet: u8 = second.parse().map_err(|_| invalid("B must be 0-255"))?;
        Ok(PodNetwork { second_octet })
    }

    pub fn node_address(self, node_index: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.second_octet, node_index + 1, 1)
    }

    pub fn node_pool(self, node_index: u8) -> AddressPool {
        AddressPool {
            prefix: [127, self.second_octet, node_index + 1],
            in_use: BTreeSet::new(),
        }
    }
}

/// The free pod addresses of one node.
#[derive(Debug)]
pub struct AddressPool {
    prefix: [u8; 3],
    in_use: BTreeSet<u8>,
}

impl AddressPool {
    /// The lowest free address, so a restarted runner hands out the same addresses again.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let host = (2..=254).find(|h| !self.in_use.contains(h))?;
        self.in_use.insert(host);
        let [a, b, c] = self.prefix;
        Some(Ipv4Addr::new(a, b, c, host))
    }

    pub fn release(&mut self, address: Ipv4Addr) {
        let [a, b, c, host] = address.octets();
        if [a, b, c] == self.prefix {
            self.in_use.remove(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_one_cluster_get_disjoint_subnets() {
        let net = PodNetwork::parse("127.42").expect("valid");
        assert_eq!(net.node_address(0), Ipv4Addr::new(127, 42, 1, 1));
        let a = net.node_pool(0).allocate();
        let b = net.node_pool(1).allocate();
        assert_eq!(a, Some(Ipv4Addr::new(127, 42, 1, 2)));
        assert_eq!(b, Some(Ipv4Addr::new(127, 42, 2, 2)));
    }

    #[test]
    fn released_address_is_reused_and_pool_runs_dry_after_253() {
        let mut pool = PodNetwork::parse("127.9").expect("valid").node_pool(0);
        let all: Vec<_> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(all.len(), 253);
        assert_eq!(pool.allocate(), None);
        pool.release(all[10]);
        assert_eq!(pool.allocate(), Some(all[10]));
    }

    #[test]
    fn network_must_be_a_loopback_slash_16() {
        assert!(PodNetwork::parse("10.1").is_err());
        assert!(PodNetwork::parse("127.300").is_err());
        assert!(PodNetwork::parse("127.x").is_err());
    }
}
