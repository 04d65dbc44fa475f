//! The time a verification is made "at".

use crate::error::{AttestError, Result};

/// A point in time, in seconds since the Unix epoch, at which certificates, collateral and
/// freshness windows are judged. Tests pin it; production passes [`VerifyAt::now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifyAt(pub u64);

impl VerifyAt {
    /// The current system time (the only place the crate reads the clock).
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        VerifyAt(secs)
    }

    /// Parse an RFC 3339 timestamp such as `2025-06-20T00:00:00Z`.
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| AttestError::malformed("time", format!("{s:?}: {e}")))?;
        let secs = t.unix_timestamp();
        u64::try_from(secs)
            .map(VerifyAt)
            .map_err(|_| AttestError::malformed("time", "before 1970"))
    }

    /// Seconds since the epoch.
    pub fn unix_secs(self) -> u64 {
        self.0
    }

    /// RFC 3339 rendering (UTC).
    pub fn to_rfc3339(self) -> String {
        i64::try_from(self.0)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("@{}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = VerifyAt::parse_rfc3339("2025-06-20T00:00:00Z").unwrap();
        assert_eq!(t.0, 1_750_377_600);
        assert_eq!(t.to_rfc3339(), "2025-06-20T00:00:00Z");
        assert!(VerifyAt::parse_rfc3339("yesterday").is_err());
    }
}
