//! The service manager's side of a serving mode: systemd's readiness protocol (`Type=notify`,
//! through the `sd-notify` crate). Outside systemd (`NOTIFY_SOCKET` unset) every call is a
//! no-op.

/// Sends `state` to systemd; a failure to reach its socket is logged, never fatal (the
/// service still runs; systemd then times the start out, which says more than we could).
pub fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "telling systemd our state (NOTIFY_SOCKET)");
    }
}
