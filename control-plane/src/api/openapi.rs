//! The OpenAPI 3.1 document of the HTTP/JSON API, served at `GET /v1/openapi.json`.
//!
//! Generated with `utoipa`, not written by hand: each handler carries a `#[utoipa::path]`
//! annotation (`api/http.rs`, `api/observe.rs`, `openapi_json`) naming its path, parameters,
//! body and the statuses it answers; the schemas come from `ToSchema` derives on the types
//! themselves, where they are defined (`state/`, `api/`, and behind the `openapi` feature in
//! `tribune-attest`, `tribune-tls` and `tribune-receipt`), so the document describes the types
//! the server serialises. [`ApiDoc`] lists the annotated handlers; [`Common`] adds what every
//! route shares, once: the security schemes, the statuses of the request bounds and of
//! authentication, and the problem-details body of every error.
//!
//! `cli/tests/openapi.rs` holds this document to the live server: every route of
//! [`super::http::route_paths`] documented and every documented path served, every request it
//! makes answered with a documented status, every 2xx JSON body valid against its schema.

use std::sync::OnceLock;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::problem::Problem;
use crate::auth::{Op, Principal};

/// Concrete paths the document lists apart from the route template that serves them:
/// `(documented path, route template)`. `POST /v1/policies/plan` is served on
/// `/v1/policies/{name}` so that a policy named `plan` stays readable and writable.
pub const CONCRETE_PATHS: [(&str, &str); 1] = [("/v1/policies/plan", "/v1/policies/{name}")];

/// Routes anyone may call (no credentials): `docs/security.md`.
pub const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The names of the two security schemes (`docs/security.md`): either one authenticates.
pub const SECURITY_BEARER: &str = "bearer";
pub const SECURITY_MTLS: &str = "mtls";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tribune control API",
        description = "The HTTP/JSON control API every Tribune controller serves (`docs/api.md`). \
            Errors are RFC 9457 problem details (`application/problem+json`). Generated from the \
            code: this document is the reference.",
        license(name = "Apache-2.0"),
    ),
    paths(
        openapi_json,
        super::http::list_policies,
        super::http::get_policy,
        super::http::put_policy,
        super::http::delete_policy,
        super::http::plan_policies,
        super::http::list_enclaves,
        super::http::get_enclave,
        super::http::put_enclave,
        super::http::delete_enclave,
        super::http::enclave_status,
        super::http::enclave_receipt,
        super::http::list_hosts,
        super::http::put_host,
        super::schedule::create_enclave,
        super::schedule::cordon,
        super::schedule::uncordon,
        super::schedule::drain,
        super::migrate::migrate,
        super::migrate::list,
        super::console::whoami,
        super::console::usage_stream,
        super::console::format_policy,
        super::http::cluster,
        super::http::add_member,
        super::http::promote,
        super::http::remove_member,
        super::http::log_sth,
        super::http::log_keys,
        super::http::log_checkpoint,
        super::http::log_note_keys,
        super::http::log_entries,
        super::http::log_inclusion,
        super::http::log_consistency,
        super::http::list_tokens,
        super::http::create_token,
        super::http::revoke_token,
        super::http::snapshot,
        super::http::healthz,
        super::http::readyz,
        super::observe::metrics,
    ),
    components(schemas(Problem)),
    tags(
        (name = "policies", description = "Policies: source, versions, checking, plans"),
        (name = "enclaves", description = "Enclaves: spec, placement, state, status, receipts"),
        (name = "hosts", description = "Host records"),
        (name = "cluster", description = "Controllers: membership, status, backups"),
        (name = "log", description = "The attestation log: tree heads, keys, entries, proofs (`docs/log.md`)"),
        (name = "tokens", description = "Bearer tokens (admins)"),
        (name = "health", description = "Liveness, readiness, metrics: no credentials"),
        (name = "api", description = "This document"),
    ),
    modifiers(&Common),
)]
pub struct ApiDoc;

/// The document as served: built once per process.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        // Serialising a document of plain strings, maps and numbers cannot fail; should it
        // ever, the error is served in place of the document rather than a panic.
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the document: {e}\"}}"))
    })
}

/// `GET /v1/openapi.json`. Behind authentication like every other `/v1` route (DESIGN's fail
/// safe; `docs/security.md`: an anonymous caller reaches only `/healthz` and `/readyz`): the
/// document holds no state, so any user role may read it — checked as `ReadPolicies`, which
/// every user role holds and agent and controller certificates do not.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "api",
    responses((status = 200, description = "this document (OpenAPI 3.1)", body = Object), (status = 403)))]
pub(super) async fn openapi_json(
    Extension(who): Extension<Principal>,
) -> Result<Response, Problem> {
    who.require(Op::ReadPolicies)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response())
}

/// What every operation shares, added once rather than on each annotation.
pub struct Common;

/// Descriptions of the statuses an annotation lists without one.
fn default_description(status: &str) -> &'static str {
    match status {
        "400" => "bad request: what was wrong and where (`detail`)",
        "401" => {
            "no credentials, or an unknown, expired, revoked or forged token (`WWW-Authenticate: Bearer`)"
        }
        "403" => {
            "the caller's role may not do this (the role needed is named), or a quota (`quota-exceeded`)"
        }
        "404" => "no such object, or one the caller may not see",
        "409" => "version precondition failed (`current_version` says where the object is)",
        "413" => "request body over 1 MiB, or a field over its bound",
        "414" => "request target over 8 KiB",
        "431" => "more than 64 headers or 16 KiB of headers",
        "500" => "internal error",
        "503" => {
            "`no-leader`, `unavailable` (retry after `Retry-After`), `outcome-unknown` (read back first) or `state-diverged`"
        }
        _ => "",
    }
}

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tbt_ID_SECRET")
                    .description(Some(
                        "A token from `tribune token create` (admins); when given, it is what counts, even beside a certificate",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SECURITY_MTLS,
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate from the cluster's CA whose identity carries a user role (`tribune ca issue`)"
                        .into(),
                ),
                extensions: None,
            },
        );
        open_internally_tagged_variants(components);
        let authenticated = vec![
            SecurityRequirement::new(SECURITY_BEARER, Vec::<String>::new()),
            SecurityRequirement::new(SECURITY_MTLS, Vec::<String>::new()),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                // Every request passes the bounds first; every authenticated one may fail
                // authentication, or inside the controller.
                let mut shared = vec!["413", "414", "431"];
                if public {
                    op.security = Some(Vec::new());
                } else {
                    op.security = Some(authenticated.clone());
                    shared.extend(["401", "500"]);
                }
                complete_responses(op, &shared);
            }
        }
    }
}

/// serde's internally tagged enums (`#[serde(tag = "event")]`) write the tag into the
/// variant's object; utoipa describes such a variant as `allOf` of the variant type and the tag,
/// but also turns the variant type's `deny_unknown_fields` into `additionalProperties: false`,
/// which no object with the tag could then satisfy. The variant types an `allOf` refers to
/// beside a tag object are left open (the enum's `oneOf` still pins the tag and the fields).
fn open_internally_tagged_variants(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::Schema;
    let mut variants = Vec::new();
    for schema in components.schemas.values() {
        let RefOr::T(Schema::OneOf(one_of)) = schema else {
            continue;
        };
        for item in &one_of.items {
            let RefOr::T(Schema::AllOf(all_of)) = item else {
                continue;
            };
            if let [RefOr::Ref(r), RefOr::T(Schema::Object(_))] = all_of.items.as_slice()
                && let Some(name) = r.ref_location.strip_prefix("#/components/schemas/")
            {
                variants.push(name.to_string());
            }
        }
    }
    for name in variants {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(&name) {
            o.additional_properties = None;
        }
    }
}

/// Adds the `shared` statuses an operation does not list, and gives every error status its
/// description (when the annotation has none) and its problem-details body.
fn complete_responses(op: &mut Operation, shared: &[&str]) {
    for status in shared {
        if !op.responses.responses.contains_key(*status) {
            op.responses.responses.insert(
                status.to_string(),
                RefOr::T(utoipa::openapi::Response::new("")),
            );
        }
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('4') && !status.starts_with('5') {
            continue;
        }
        if response.description.is_empty() {
            response.description = default_description(status).to_string();
        }
        if response.content.is_empty() {
            response.content.insert(
                "application/problem+json".to_string(),
                Content::new(Some(Ref::from_schema_name("Problem"))),
            );
        }
    }
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
