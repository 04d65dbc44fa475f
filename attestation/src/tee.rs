//! [`TeeKind`]: which trusted execution environment evidence comes from. One type for the
//! verifier, the replicated state, the API and the policy language; its names (`sev-snp`,
//! `tdx`, `sim`) are the wire and JSON spelling everywhere. An unknown name is an error, never
//! a default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Kind of TEE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TeeKind {
    /// AMD SEV-SNP.
    SevSnp,
    /// Intel TDX.
    Tdx,
    /// Tribune's simulated TEE (development and tests; refused unless allowed).
    Sim,
}

impl TeeKind {
    pub const ALL: [TeeKind; 3] = [TeeKind::SevSnp, TeeKind::Tdx, TeeKind::Sim];
    /// The names, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 3] = ["sev-snp", "tdx", "sim"];

    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::SevSnp => "sev-snp",
            TeeKind::Tdx => "tdx",
            TeeKind::Sim => "sim",
        }
    }

    /// The kind named `s` exactly (see [`FromStr`] for the error that explains).
    pub fn from_name(s: &str) -> Option<TeeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// This kind as one bit, for compact sets of kinds (`1 << position in ALL`).
    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A TEE kind name that is not one of [`TeeKind::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE kind {0:?}: use \"sev-snp\", \"tdx\" or \"sim\"")]
pub struct UnknownTeeKind(pub String);

impl FromStr for TeeKind {
    type Err = UnknownTeeKind;

    fn from_str(s: &str) -> Result<Self, UnknownTeeKind> {
        Self::from_name(s).ok_or_else(|| UnknownTeeKind(s.to_string()))
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In JSON a TEE kind is one of [`TeeKind::NAMES`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TeeKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::NAMES))
            .description(Some(
                "Kind of TEE: AMD SEV-SNP, Intel TDX, or Tribune's simulated TEE.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TeeKind {
    fn name() -> std::borrow::Cow<'static, str> {
        "TeeKind".into()
    }
}

impl Serialize for TeeKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TeeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_display_and_serialise_as_they_always_were() {
        for (k, name) in TeeKind::ALL.into_iter().zip(TeeKind::NAMES) {
            assert_eq!(k.as_str(), name);
            assert_eq!(k.to_string(), name);
            assert_eq!(name.parse::<TeeKind>(), Ok(k));
            assert_eq!(TeeKind::from_name(name), Some(k));
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<TeeKind>(&json).expect("parse"), k);
        }
        // Bits are distinct.
        let bits: Vec<u8> = TeeKind::ALL.iter().map(|k| k.bit()).collect();
        assert_eq!(bits, [1, 2, 4]);
    }

    #[test]
    fn an_unknown_kind_is_an_error_never_a_default() {
        for bad in ["", "snp", "SEV-SNP", "Sim", "sgx", " sim", "sim\0"] {
            let e = bad.parse::<TeeKind>().expect_err(bad);
            assert_eq!(e, UnknownTeeKind(bad.to_string()));
            assert!(
                e.to_string()
                    .contains("use \"sev-snp\", \"tdx\" or \"sim\""),
                "{e}"
            );
            assert_eq!(TeeKind::from_name(bad), None);
            let json = serde_json::to_string(bad).expect("json");
            let e = serde_json::from_str::<TeeKind>(&json).expect_err(bad);
            assert!(e.to_string().starts_with("unknown TEE kind"), "{e}");
        }
        // Not a string at all.
        assert!(serde_json::from_str::<TeeKind>("1").is_err());
        assert!(serde_json::from_str::<TeeKind>("null").is_err());
    }
}
