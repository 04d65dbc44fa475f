//! The history of a run: one JSON object a line, an `invoke` when a client sends an operation
//! and one completion when it learns the outcome — `ok` (it took effect, with what it
//! returned), `fail` (it certainly did not take effect: connection refused, or a
//! compare-and-set whose version did not match, which the API promises changes nothing) or
//! `info` (outcome unknown: a time-out or a 5xx; the operation may or may not have taken effect,
//! now or later). A client that saw `info` goes on as a new *process*, as in Jepsen: its old
//! operation stays open forever.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Error;

/// An operation on one policy (a register: its version and the value written into its source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A linearizable `GET /v1/policies/{key}`.
    Read,
    /// A blind `PUT` of `value`.
    Write { value: u64 },
    /// `PUT` with `If-Match: "expect"`.
    Cas { expect: u64, value: u64 },
}

/// What an operation returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "kebab-case")]
pub enum Ret {
    /// Version 0 and no value: the policy does not exist.
    Read { version: u64, value: Option<u64> },
    /// The write took effect as this version.
    Written { version: u64 },
    /// The compare-and-set found another version (409) and changed nothing.
    CasFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the run started.
    pub t_ms: u64,
    /// The checker's process (a client after an `info` goes on as a new one).
    pub process: u64,
    pub client: u64,
    /// The controller asked (1-based).
    pub node: u64,
    pub key: String,
    pub kind: Kind,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// Why a `fail` or `info` (status, problem type, transport error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A read whose source held no value any write wrote, verbatim (a torn or foreign value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

/// Where events go: in memory for the checkers, and a JSON-lines file as they happen.
pub struct Recorder {
    started: Instant,
    inner: Mutex<(Vec<Event>, Option<std::io::BufWriter<std::fs::File>>)>,
}

impl Recorder {
    pub fn new(file: Option<&Path>) -> Result<Self, Error> {
        let w = match file {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .map_err(|e| Error::Setup(format!("creating {}: {e}", p.display())))?,
            )),
            None => None,
        };
        Ok(Self {
            started: Instant::now(),
            inner: Mutex::new((vec![], w)),
        })
    }

    /// Appends `e` (its time set now). Events are recorded in the order they happened: the
    /// invoke before the request is sent, the completion after the answer arrived.
    pub fn record(&self, mut e: Event) {
        e.t_ms = self.started.elapsed().as_millis() as u64;
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &mut g.1
            && let Ok(line) = serde_json::to_string(&e)
        {
            let _ = writeln!(w, "{line}");
        }
        g.0.push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &mut g.1 {
            let _ = w.flush();
        }
        g.0.clone()
    }
}

/// Reads a history file back (`tribune chaos check FILE`).
pub fn read(path: &Path) -> Result<Vec<Event>, Error> {
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Setup(format!("opening {}: {e}", path.display())))?;
    let mut out = vec![];
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::Setup(format!("reading {}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::Setup(format!("{}:{}: {e}", path.display(), i + 1)))?,
        );
    }
    Ok(out)
}
