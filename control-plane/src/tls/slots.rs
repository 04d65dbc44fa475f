//! Admission of TLS handshakes: the pure bookkeeping behind the accept loop in [`super`].
//!
//! A handshake in progress ("half-open": TCP accepted, TLS not finished) costs a socket and a
//! task, and a client that connects and then says nothing holds it until the handshake
//! timeout. So pending handshakes are bounded in total and per source, and a new connection is
//! never made to wait for a slot: when the bound is reached the **oldest** pending handshake
//! (of the same source when that source is at its own bound, else of all) is closed to make
//! room. A real client finishes its handshake in milliseconds; one that has been pending
//! longest is the likeliest to be idle. So a flood of idle sockets only ever evicts itself and
//! cannot starve a probe or a peer — not even one from the same address (loopback, NAT), where
//! a per-source bound alone would not help.
//!
//! Sources are IPv4 addresses and IPv6 /64 prefixes (one host usually holds a whole /64);
//! IPv4-mapped IPv6 addresses count as their IPv4 address.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

/// The source a handshake is counted against (see the module docs).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Pending handshakes, oldest first, each with a handle `H` whose drop (or use) closes it.
#[derive(Debug)]
pub struct HandshakeSlots<H> {
    total_max: usize,
    per_source_max: usize,
    next_id: u64,
    /// By admission order: the first entry is the oldest.
    pending: BTreeMap<u64, (IpAddr, H)>,
    per_source: HashMap<IpAddr, usize>,
}

/// What [`HandshakeSlots::admit`] decided.
#[derive(Debug)]
pub struct Admitted<H> {
    /// The new handshake's id, for [`HandshakeSlots::finish`].
    pub id: u64,
    /// The handshake closed to make room for it, if one was: close it (drop its handle).
    pub evicted: Option<H>,
}

impl<H> HandshakeSlots<H> {
    /// At most `total_max` pending handshakes, and `per_source_max` from one source (both at
    /// least 1; `per_source_max` at most `total_max`).
    pub fn new(total_max: usize, per_source_max: usize) -> Self {
        let total_max = total_max.max(1);
        Self {
            total_max,
            per_source_max: per_source_max.clamp(1, total_max),
            next_id: 0,
            pending: BTreeMap::new(),
            per_source: HashMap::new(),
        }
    }

    /// Admits a handshake from `ip`, evicting the oldest one of the same source if that source
    /// is at its bound, else the oldest of all if all slots are taken. Always admits.
    pub fn admit(&mut self, ip: IpAddr, handle: H) -> Admitted<H> {
        let source = source_of(ip);
        let evict = if self.per_source.get(&source).copied().unwrap_or(0) >= self.per_source_max {
            self.pending
                .iter()
                .find(|(_, (s, _))| *s == source)
                .map(|(id, _)| *id)
        } else if self.pending.len() >= self.total_max {
            self.pending.keys().next().copied()
        } else {
            None
        };
        let evicted = evict.and_then(|id| self.remove(id));
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, (source, handle));
        *self.per_source.entry(source).or_insert(0) += 1;
        debug_assert!(self.pending.len() <= self.total_max);
        debug_assert!(self.per_source[&source] <= self.per_source_max);
        Admitted { id, evicted }
    }

    /// The handshake `id` ended (done, failed or timed out): its slot is free. Returns its
    /// handle; `None` when it was evicted before (nothing to free).
    pub fn finish(&mut self, id: u64) -> Option<H> {
        self.remove(id)
    }

    fn remove(&mut self, id: u64) -> Option<H> {
        let (source, handle) = self.pending.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        Some(handle)
    }

    /// Handshakes pending now.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Handshakes pending now from the source of `ip`.
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.per_source.get(&source_of(ip)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn below_the_bounds_nothing_is_evicted_and_finish_frees_the_slot() {
        let mut s = HandshakeSlots::new(4, 2);
        let a = s.admit(ip("10.0.0.1"), "a");
        let b = s.admit(ip("10.0.0.2"), "b");
        assert!(a.evicted.is_none() && b.evicted.is_none());
        assert_eq!(s.len(), 2);
        assert_eq!(s.finish(a.id), Some("a"));
        assert_eq!(s.finish(a.id), None, "finishing twice frees nothing twice");
        assert_eq!(s.from_source(ip("10.0.0.1")), 0);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_source_at_its_bound_evicts_its_own_oldest_not_others() {
        let mut s = HandshakeSlots::new(10, 3);
        s.admit(ip("10.0.0.9"), "other");
        for h in ["f1", "f2", "f3"] {
            assert!(s.admit(ip("10.0.0.1"), h).evicted.is_none());
        }
        // The flood's fourth evicts the flood's first, never the other source's.
        assert_eq!(s.admit(ip("10.0.0.1"), "f4").evicted, Some("f1"));
        assert_eq!(s.admit(ip("10.0.0.1"), "f5").evicted, Some("f2"));
        assert_eq!(s.from_source(ip("10.0.0.1")), 3);
        assert_eq!(s.from_source(ip("10.0.0.9")), 1);
    }

    #[test]
    fn when_all_slots_are_taken_the_oldest_of_all_goes() {
        let mut s = HandshakeSlots::new(3, 3);
        s.admit(ip("10.0.0.1"), "a");
        s.admit(ip("10.0.0.2"), "b");
        s.admit(ip("10.0.0.3"), "c");
        assert_eq!(s.admit(ip("10.0.0.4"), "d").evicted, Some("a"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.from_source(ip("10.0.0.1")), 0);
    }

    #[test]
    fn a_probe_sharing_the_flooders_address_is_admitted_and_survives_a_burst_below_the_bound() {
        // Loopback: the flood and the probe are both 127.0.0.1.
        let mut s = HandshakeSlots::new(256, 64);
        for i in 0..1000 {
            s.admit(ip("127.0.0.1"), format!("idle{i}"));
        }
        assert_eq!(s.len(), 64);
        let probe = s.admit(ip("127.0.0.1"), "probe".to_string());
        assert_eq!(
            probe.evicted.as_deref(),
            Some("idle936"),
            "the oldest idle one"
        );
        // 63 more idle connections during the probe's handshake evict only idle ones.
        for i in 0..63 {
            let e = s.admit(ip("127.0.0.1"), format!("later{i}")).evicted;
            assert_ne!(e.as_deref(), Some("probe"));
        }
        assert_eq!(s.finish(probe.id).as_deref(), Some("probe"));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let mut s = HandshakeSlots::new(10, 2);
        s.admit(ip("2001:db8:1:2::1"), 1);
        s.admit(ip("2001:db8:1:2::2"), 2);
        assert_eq!(s.admit(ip("2001:db8:1:2::3"), 3).evicted, Some(1));
        assert!(s.admit(ip("2001:db8:1:3::1"), 4).evicted.is_none());
        s.admit(ip("::ffff:10.0.0.1"), 5);
        assert_eq!(s.from_source(ip("10.0.0.1")), 1);
    }

    #[test]
    fn bounds_are_at_least_one_and_per_source_at_most_total() {
        let mut s = HandshakeSlots::new(0, 0);
        s.admit(ip("10.0.0.1"), 1);
        assert_eq!(s.admit(ip("10.0.0.2"), 2).evicted, Some(1));
        let mut s = HandshakeSlots::new(2, 50);
        s.admit(ip("10.0.0.1"), 1);
        s.admit(ip("10.0.0.1"), 2);
        assert_eq!(s.admit(ip("10.0.0.1"), 3).evicted, Some(1));
    }
}
