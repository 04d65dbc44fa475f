//! The `process` runtime: a command run as a simulated enclave in its own cgroups and network
//! namespace, as the enclave's unprivileged user. Suspend/resume is the cgroup freezer.

use std::path::Path;
use std::time::Duration;

use super::{
    BoxFut, Enclave, EnclaveStatus, Identity, LaunchContext, PrivilegeDrop, Runtime, RuntimeKind,
    spawn_confined, terminate, terminate_group,
};
use crate::cgroup::CgroupEnforcer;
use crate::error::{AgentError, Result};
use crate::launch::CheckedLaunch;
use crate::plan::LaunchSpec;
use std::sync::Arc;

pub struct ProcessRuntime;

pub struct ProcessEnclave {
    identity: Identity,
    /// `None` for an enclave adopted after an agent crash (not our child).
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    cgroups: Arc<dyn CgroupEnforcer>,
    exited: Option<Option<i32>>,
}

impl Runtime for ProcessRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Process
    }

    fn launch(&self, ctx: LaunchContext, launch: CheckedLaunch) -> BoxFut<'_, Box<dyn Enclave>> {
        Box::pin(async move {
            let LaunchSpec::Process { cmd, .. } = launch.spec() else {
                return Err(AgentError::Runtime(
                    "the process runtime cannot launch a qemu spec".into(),
                ));
            };
            if ctx.incoming.is_some() {
                return Err(AgentError::Runtime(
                    "process enclaves cannot live-migrate (they move by stop-and-restart)".into(),
                ));
            }
            // The file whose digest the allow-list checked; `cmd[0]` only in development mode.
            let arg0 = cmd
                .first()
                .ok_or_else(|| AgentError::Runtime("empty command".into()))?;
            let program = launch.program().unwrap_or(Path::new(arg0));
            let child = spawn_confined(
                program,
                cmd,
                &ctx,
                false,
                PrivilegeDrop::for_process(ctx.run_as),
            )?;
            let pid = child.id();
            if let Some(p) = pid {
                ctx.cgroups.observe_pid(&ctx.identity.group, p);
            }
            Ok(Box::new(ProcessEnclave {
                identity: ctx.identity,
                child: Some(child),
                pid,
                cgroups: ctx.cgroups,
                exited: None,
            }) as Box<dyn Enclave>)
        })
    }

    fn adopt(&self, ctx: LaunchContext, pids: Vec<u32>) -> BoxFut<'_, Box<dyn Enclave>> {
        Box::pin(async move {
            Ok(Box::new(ProcessEnclave {
                identity: ctx.identity,
                child: None,
                pid: pids.iter().min().copied(),
                cgroups: ctx.cgroups,
                exited: None,
            }) as Box<dyn Enclave>)
        })
    }
}

impl ProcessEnclave {
    fn poll_exit(&mut self) -> Result<Option<Option<i32>>> {
        super::poll_exit(
            &mut self.child,
            &mut self.exited,
            self.cgroups.as_ref(),
            &self.identity.group,
        )
    }
}

impl Enclave for ProcessEnclave {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn exit_code(&mut self) -> Result<Option<Option<i32>>> {
        self.poll_exit()
    }

    fn status(&mut self) -> BoxFut<'_, EnclaveStatus> {
        Box::pin(async move {
            if let Some(code) = self.poll_exit()? {
                return Ok(EnclaveStatus::Exited { code });
            }
            if self.cgroups.is_frozen(&self.identity.group)? {
                Ok(EnclaveStatus::Suspended)
            } else {
                Ok(EnclaveStatus::Running)
            }
        })
    }

    fn suspend(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.cgroups.freeze(&self.identity.group) })
    }

    fn resume(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.cgroups.thaw(&self.identity.group) })
    }

    fn stop(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            // A frozen process cannot act on signals.
            self.cgroups.thaw(&self.identity.group)?;
            if self.poll_exit()?.is_none() {
                match &mut self.child {
                    Some(child) => terminate(child, Duration::from_secs(2)).await,
                    // Not our child: the agent's cgroup removal SIGKILLs what is left.
                    None => {
                        terminate_group(
                            self.cgroups.as_ref(),
                            &self.identity.group,
                            Duration::from_secs(2),
                        )
                        .await;
                    }
                }
                self.exited = Some(None);
            }
            Ok(())
        })
    }
}
