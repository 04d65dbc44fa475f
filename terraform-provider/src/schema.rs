//! Schemas as Terraform wants them, and diagnostics: the small vocabulary every resource and
//! data source is written in.

use crate::proto::tfplugin6 as tf;

/// How an attribute is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Required,
    Optional,
    /// Set by the provider only.
    Computed,
}

/// One attribute: its name, its cty type as JSON (`"string"`, `["list","string"]`), how it is
/// set, whether it is secret, and what it is for.
pub struct Attr {
    pub name: &'static str,
    pub ty: &'static str,
    pub mode: Mode,
    pub sensitive: bool,
    pub description: &'static str,
}

impl Attr {
    pub const fn new(
        name: &'static str,
        ty: &'static str,
        mode: Mode,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            ty,
            mode,
            sensitive: false,
            description,
        }
    }

    pub const fn sensitive(self) -> Self {
        Self {
            sensitive: true,
            ..self
        }
    }
}

/// A schema of plain attributes (no nested blocks).
pub fn schema(version: i64, description: &str, attrs: &[Attr]) -> tf::Schema {
    tf::Schema {
        version,
        block: Some(tf::schema::Block {
            version,
            attributes: attrs
                .iter()
                .map(|a| tf::schema::Attribute {
                    name: a.name.to_string(),
                    r#type: a.ty.as_bytes().to_vec(),
                    description: a.description.to_string(),
                    required: a.mode == Mode::Required,
                    optional: a.mode == Mode::Optional,
                    computed: a.mode == Mode::Computed,
                    sensitive: a.sensitive,
                    description_kind: tf::StringKind::Plain as i32,
                    deprecated: false,
                })
                .collect(),
            block_types: vec![],
            description: description.to_string(),
            description_kind: tf::StringKind::Plain as i32,
            deprecated: false,
        }),
    }
}

/// The path of a top-level attribute.
pub fn path(attr: &str) -> tf::AttributePath {
    tf::AttributePath {
        steps: vec![tf::attribute_path::Step {
            selector: Some(tf::attribute_path::step::Selector::AttributeName(
                attr.to_string(),
            )),
        }],
    }
}

pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> tf::Diagnostic {
    tf::Diagnostic {
        severity: tf::diagnostic::Severity::Error as i32,
        summary: summary.into(),
        detail: detail.into(),
        attribute: None,
    }
}

/// An error about one attribute: Terraform shows the configuration line that sets it.
pub fn error_at(
    attr: &str,
    summary: impl Into<String>,
    detail: impl Into<String>,
) -> tf::Diagnostic {
    tf::Diagnostic {
        attribute: Some(path(attr)),
        ..error(summary, detail)
    }
}
