//! The applied plan on disk: written atomically (temp file, fsync, rename, fsync of the
//! directory) so a crash leaves either the old or the new plan, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};
use crate::fence::EpochFloors;
use crate::plan::Plan;

/// Name of the applied-plan file inside the data directory.
pub const APPLIED_PLAN_FILE: &str = "applied-plan.json";
/// Name of the placement-epoch floors file (`crate::fence`).
pub const EPOCHS_FILE: &str = "placement-epochs.json";
/// Name of the file of the live migrations this host is the target of (`agent/migrate.rs`):
/// a VM waiting for its state is in no applied plan, so after an agent crash this file is
/// what lets the restarted agent adopt it (rather than kill a VM that may hold the only
/// copy of a state already sent).
pub const INCOMING_FILE: &str = "migrating-in.json";

/// Name of the file of the live migrations this host is the source of, by enclave: the
/// migration's id, recorded before QEMU's `migrate` starts and dropped at its end. A source
/// agent restarted mid-migration reads it back, so it still ignores the end of another
/// migration (a rollback of an older one would cancel this one and resume the VM under the
/// old epoch) and still tells a re-sent step of this one from a new one.
pub const OUTGOING_FILE: &str = "migrating-out.json";

/// A live migration into this host, as recorded for a restart: its id and the plan its VM
/// was started with (paused).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    pub migration_id: String,
    pub plan: crate::plan::EnclavePlan,
}

#[derive(Debug, Clone)]
pub struct PlanStore {
    dir: PathBuf,
}

impl PlanStore {
    pub fn new(dir: impl Into<PathBuf>) -> Result<PlanStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| AgentError::io("create data dir", &dir, e))?;
        Ok(PlanStore { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(APPLIED_PLAN_FILE)
    }

    /// The last applied plan, if any.
    pub fn load(&self) -> Result<Option<Plan>> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => Plan::from_json(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AgentError::io("read", path, e)),
        }
    }

    /// Records `plan` as applied.
    pub fn save(&self, plan: &Plan) -> Result<()> {
        let text = serde_json::to_vec_pretty(plan)
            .map_err(|e| AgentError::InvalidPlan(format!("serialise: {e}")))?;
        replace_synced(&self.dir, APPLIED_PLAN_FILE, &text)
    }

    /// The highest placement epoch seen per enclave (empty when never saved).
    pub fn load_epochs(&self) -> Result<EpochFloors> {
        let path = self.dir.join(EPOCHS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AgentError::InvalidPlan(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EpochFloors::default()),
            Err(e) => Err(AgentError::io("read", path, e)),
        }
    }

    /// Records the epoch floors (before any plan that relies on them is acknowledged).
    pub fn save_epochs(&self, floors: &EpochFloors) -> Result<()> {
        let text = serde_json::to_vec(floors)
            .map_err(|e| AgentError::InvalidPlan(format!("serialise: {e}")))?;
        replace_synced(&self.dir, EPOCHS_FILE, &text)
    }
}

impl PlanStore {
    /// The live migrations into this host, by enclave (empty when never saved).
    pub fn load_incoming(&self) -> Result<std::collections::BTreeMap<String, Incoming>> {
        let path = self.dir.join(INCOMING_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AgentError::InvalidPlan(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(AgentError::io("read", path, e)),
        }
    }

    /// Records the live migrations into this host (before the VM of a new one starts).
    pub fn save_incoming(
        &self,
        incoming: &std::collections::BTreeMap<String, Incoming>,
    ) -> Result<()> {
        let text = serde_json::to_vec(incoming)
            .map_err(|e| AgentError::InvalidPlan(format!("serialise: {e}")))?;
        replace_synced(&self.dir, INCOMING_FILE, &text)
    }

    /// The live migrations out of this host: enclave → migration id (empty when never saved).
    pub fn load_outgoing(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let path = self.dir.join(OUTGOING_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| AgentError::InvalidPlan(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(AgentError::io("read", path, e)),
        }
    }

    /// Records (`Some(id)`) or forgets (`None`) enclave `name`'s migration out of this host.
    pub fn set_outgoing(&self, name: &str, id: Option<&str>) -> Result<()> {
        let mut all = self.load_outgoing()?;
        let changed = match id {
            Some(id) => all.insert(name.to_string(), id.to_string()).as_deref() != Some(id),
            None => all.remove(name).is_some(),
        };
        if !changed {
            return Ok(());
        }
        let text = serde_json::to_vec(&all)
            .map_err(|e| AgentError::InvalidPlan(format!("serialise: {e}")))?;
        replace_synced(&self.dir, OUTGOING_FILE, &text)
    }

    /// Adds (`Some`) or removes (`None`) enclave `name`'s migration into this host.
    pub fn set_incoming(&self, name: &str, m: Option<Incoming>) -> Result<()> {
        let mut all = self.load_incoming()?;
        let changed = match m {
            Some(m) => all.insert(name.to_string(), m.clone()).as_ref() != Some(&m),
            None => all.remove(name).is_some(),
        };
        if changed {
            self.save_incoming(&all)?;
        }
        Ok(())
    }
}

/// Replaces `dir/name` with `bytes` atomically: a temp file written and fsynced, renamed over
/// it, the directory fsynced. One writer per file (the agent owning `dir`).
fn replace_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, &path).map_err(|e| AgentError::io("rename", &path, e))?;
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| AgentError::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| AgentError::io("write", path, e))?;
    f.sync_all().map_err(|e| AgentError::io("fsync", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let plan = Plan {
            version: 7,
            ..Plan::default()
        };
        store.save(&plan).unwrap();
        assert_eq!(store.load().unwrap(), Some(plan));
        assert!(
            !dir.path()
                .join(format!(".{APPLIED_PLAN_FILE}.tmp"))
                .exists()
        );
    }

    #[test]
    fn outgoing_migrations_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path()).unwrap();
        assert!(store.load_outgoing().unwrap().is_empty());
        store.set_outgoing("vm", Some("mig-1-vm")).unwrap();
        store.set_outgoing("other", Some("mig-2-other")).unwrap();
        let again = PlanStore::new(dir.path()).unwrap();
        assert_eq!(
            again.load_outgoing().unwrap().get("vm").map(String::as_str),
            Some("mig-1-vm")
        );
        again.set_outgoing("vm", None).unwrap();
        assert_eq!(again.load_outgoing().unwrap().len(), 1);
        std::fs::write(dir.path().join(OUTGOING_FILE), "{not json").unwrap();
        let e = again.load_outgoing().unwrap_err().to_string();
        assert!(e.contains(OUTGOING_FILE), "{e}");
    }

    #[test]
    fn incoming_migrations_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path()).unwrap();
        assert!(store.load_incoming().unwrap().is_empty());
        let m = Incoming {
            migration_id: "m1".into(),
            plan: crate::plan::EnclavePlan {
                placement_epoch: 3,
                ..crate::plan::EnclavePlan::default()
            },
        };
        store.set_incoming("vm", Some(m.clone())).unwrap();
        assert_eq!(store.load_incoming().unwrap().get("vm"), Some(&m));
        store.set_incoming("vm", None).unwrap();
        assert!(store.load_incoming().unwrap().is_empty());
    }
}
