//! Tests that set environment variables: the environment is the process's, shared by every
//! test thread, so each such test holds [`vars`]'s guard for as long as it parses, and the
//! variables are put back as they were when the guard drops. Every test that parses a command
//! line with the variables attached ([`super::env_vars`]) takes the guard too (with no
//! variables), so none sees another test's.

use std::ffi::OsString;
use std::sync::{Mutex, MutexGuard};

static LOCK: Mutex<()> = Mutex::new(());

/// Variables set for one test; dropping it restores them and lets the next test in.
pub struct Vars {
    saved: Vec<(String, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

/// Sets `set` (and removes every other `TRIBUNE_CONTROLLER_…`/`TRIBUNE_AGENT_…` variable, so a
/// developer's shell cannot change what a test sees) until the returned guard drops.
pub fn vars(set: &[(&str, &str)]) -> Vars {
    let lock = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with(super::env_vars::CONTROLLER_PREFIX)
                || k.starts_with(super::env_vars::AGENT_PREFIX)
                || k == "TRIBUNE_LAUNCH_POLICY"
        })
        .collect();
    names.extend(set.iter().map(|(k, _)| k.to_string()));
    names.sort();
    names.dedup();
    let saved = names
        .into_iter()
        .map(|k| {
            let old = std::env::var_os(&k);
            (k, old)
        })
        .collect::<Vec<_>>();
    for (k, _) in &saved {
        // SAFETY: tests that touch these variables hold LOCK; std's own environment lock
        // serialises this with every other `std::env` read in the process.
        unsafe { std::env::remove_var(k) };
    }
    for (k, v) in set {
        // SAFETY: as above.
        unsafe { std::env::set_var(k, v) };
    }
    Vars { saved, _lock: lock }
}

impl Drop for Vars {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            // SAFETY: LOCK is still held (the guard field drops after this body).
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
    }
}
