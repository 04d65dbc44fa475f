//! Loopback ports for the processes a test or benchmark starts.
//!
//! The OS picks a port that is free right now; a port this process has already handed out is
//! never handed out again, so two clusters of one test binary cannot be given the same port
//! between one's `free_port` and its controller's `bind`.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use crate::Error;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

const TRIES: usize = 1000;

/// A loopback port free right now, not handed out before by this process.
pub fn try_free_port() -> Result<u16, Error> {
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..TRIES {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("binding an ephemeral loopback port"))?
            .port();
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::NoPort { tries: TRIES })
}

/// [`try_free_port`] for tests: panics when no port can be had.
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}

/// `127.0.0.1:PORT` with a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A base port B above 1024 such that B+1 ..= B+`count` are all free now (for a command that
/// takes a base port, like `tribune dev --port-base`).
pub fn free_port_base(count: u16) -> u16 {
    loop {
        let base = free_port().saturating_sub(10);
        if base > 1024 && (1..=count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len(), "a port was handed out twice");
        for p in ports.iter().take(20) {
            TcpListener::bind(("127.0.0.1", *p)).expect("a handed-out port is free");
        }
        assert!(free_addr().starts_with("127.0.0.1:"));
    }

    #[test]
    fn a_port_base_has_its_ports_free() {
        let base = free_port_base(3);
        assert!(base > 1024);
        for i in 1..=3 {
            TcpListener::bind(("127.0.0.1", base + i)).expect("free");
        }
    }
}
