//! The `tfplugin6.Provider` service: decodes what Terraform sends, hands it to the resource or
//! data source it names, and encodes the answer. Every failure is a diagnostic; no RPC panics
//! or returns a gRPC error for bad input.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::RwLock;
use tonic::{Request, Response, Status};

use crate::client::{Client, Settings};
use crate::proto::tfplugin6 as tf;
use crate::resources::{data, enclave, policy};
use crate::schema::{self, Attr, Mode};
use crate::value::{self, Value};

/// Default for `timeout_seconds`: the most any one API call (with its retries) may take.
pub const TIMEOUT_S_DEFAULT: u64 = 30;
/// Upper bound on `timeout_seconds`.
pub const TIMEOUT_S_MAX: u64 = 600;

/// The environment variables the provider reads, named as the `tribune` CLI's client verbs
/// name them (cli/src/cmd/client.rs).
pub const ENV_ENDPOINT: &str = "TRIBUNE_ENDPOINT";
pub const ENV_CA: &str = "TRIBUNE_CA";
pub const ENV_CERT: &str = "TRIBUNE_CERT";
pub const ENV_KEY: &str = "TRIBUNE_KEY";
pub const ENV_TOKEN: &str = "TRIBUNE_TOKEN";

#[derive(Default)]
pub struct Provider {
    client: RwLock<Option<Arc<Client>>>,
}

fn provider_schema() -> tf::Schema {
    schema::schema(
        0,
        "Tribune: policies and enclaves as code.",
        &[
            Attr::new(
                "endpoints",
                "[\"list\",\"string\"]",
                Mode::Optional,
                "Controller API endpoints, tried in turn (TRIBUNE_ENDPOINT, comma-separated).",
            ),
            Attr::new(
                "ca",
                "\"string\"",
                Mode::Optional,
                "CA certificate (PEM file) of the cluster; turns TLS on (TRIBUNE_CA).",
            ),
            Attr::new(
                "cert",
                "\"string\"",
                Mode::Optional,
                "Client certificate (PEM file) (TRIBUNE_CERT).",
            ),
            Attr::new(
                "key",
                "\"string\"",
                Mode::Optional,
                "Key of `cert` (PEM file) (TRIBUNE_KEY).",
            ),
            Attr::new(
                "token",
                "\"string\"",
                Mode::Optional,
                "Bearer token from `tribune token create` (TRIBUNE_TOKEN).",
            )
            .sensitive(),
            Attr::new(
                "timeout_seconds",
                "\"number\"",
                Mode::Optional,
                "Longest one API call may take, retries included (default 30).",
            ),
        ],
    )
}

/// The client settings from the provider block, each unset one from its environment variable.
pub fn settings(
    config: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, tf::Diagnostic> {
    let text = |attr: &str, var: &str| -> Option<String> {
        config
            .get(attr)
            .as_str()
            .map(str::to_string)
            .or_else(|| env(var))
            .filter(|s| !s.trim().is_empty())
    };
    let endpoints: Vec<String> = match config.get("endpoints") {
        Value::List(l) if !l.is_empty() => l
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => env(ENV_ENDPOINT)
            .map(|s| {
                s.split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let timeout_s = match config.get("timeout_seconds") {
        Value::Null => TIMEOUT_S_DEFAULT,
        v => match v.as_i64() {
            Some(s) if (1..=TIMEOUT_S_MAX as i64).contains(&s) => s as u64,
            _ => {
                return Err(schema::error_at(
                    "timeout_seconds",
                    "Invalid timeout",
                    format!("`timeout_seconds` must be a whole number from 1 to {TIMEOUT_S_MAX}"),
                ));
            }
        },
    };
    Ok(Settings {
        endpoints,
        ca: text("ca", ENV_CA).map(PathBuf::from),
        cert: text("cert", ENV_CERT).map(PathBuf::from),
        key: text("key", ENV_KEY).map(PathBuf::from),
        token: text("token", ENV_TOKEN),
        timeout: Duration::from_secs(timeout_s),
    })
}

fn decode(v: Option<&tf::DynamicValue>) -> Result<Value, tf::Diagnostic> {
    let Some(v) = v else { return Ok(Value::Null) };
    let r = if !v.msgpack.is_empty() {
        value::from_msgpack(&v.msgpack)
    } else if !v.json.is_empty() {
        value::from_json(&v.json)
    } else {
        Ok(Value::Null)
    };
    r.map_err(|e| {
        schema::error(
            "Terraform sent a value the provider cannot read",
            e.to_string(),
        )
    })
}

fn encode(v: &Value) -> Option<tf::DynamicValue> {
    Some(tf::DynamicValue {
        msgpack: value::to_msgpack(v),
        json: vec![],
    })
}

fn unknown_type(kind: &str, name: &str) -> tf::Diagnostic {
    schema::error(
        format!("Unknown {kind} type {name:?}"),
        "This provider serves the resources tribune_policy and tribune_enclave and the data sources tribune_policy, tribune_hosts and tribune_cluster.",
    )
}

/// The resource types this provider manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    Policy,
    Enclave,
}

fn resource(type_name: &str) -> Result<Resource, tf::Diagnostic> {
    match type_name {
        policy::TYPE => Ok(Resource::Policy),
        enclave::TYPE => Ok(Resource::Enclave),
        other => Err(unknown_type("resource", other)),
    }
}

impl Provider {
    async fn client(&self) -> Result<Arc<Client>, tf::Diagnostic> {
        self.client.read().await.clone().ok_or_else(|| {
            schema::error(
                "The provider is not configured",
                "Terraform called the provider before configuring it; this is a bug in Terraform or the provider.",
            )
        })
    }
}

#[tonic::async_trait]
impl tf::provider_server::Provider for Provider {
    async fn get_provider_schema(
        &self,
        _r: Request<tf::get_provider_schema::Request>,
    ) -> Result<Response<tf::get_provider_schema::Response>, Status> {
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(provider_schema()),
            resource_schemas: [
                (policy::TYPE.to_string(), policy::schema()),
                (enclave::TYPE.to_string(), enclave::schema()),
            ]
            .into_iter()
            .collect(),
            data_source_schemas: data::schemas()
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
            diagnostics: vec![],
            provider_meta: None,
            server_capabilities: Some(tf::ServerCapabilities {
                plan_destroy: false,
                get_provider_schema_optional: false,
                move_resource_state: false,
            }),
        }))
    }

    async fn validate_provider_config(
        &self,
        r: Request<tf::validate_provider_config::Request>,
    ) -> Result<Response<tf::validate_provider_config::Response>, Status> {
        let diagnostics = match decode(r.get_ref().config.as_ref()) {
            Ok(c) if c.has_unknown() => vec![],
            Ok(c) => settings(&c, &|_| None).err().into_iter().collect(),
            Err(d) => vec![d],
        };
        Ok(Response::new(tf::validate_provider_config::Response {
            diagnostics,
        }))
    }

    async fn validate_resource_config(
        &self,
        r: Request<tf::validate_resource_config::Request>,
    ) -> Result<Response<tf::validate_resource_config::Response>, Status> {
        let r = r.get_ref();
        let diagnostics = match (resource(&r.type_name), decode(r.config.as_ref())) {
            (Err(d), _) | (_, Err(d)) => vec![d],
            (Ok(Resource::Policy), Ok(c)) => policy::validate(&c),
            (Ok(Resource::Enclave), Ok(c)) => enclave::validate(&c),
        };
        Ok(Response::new(tf::validate_resource_config::Response {
            diagnostics,
        }))
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<tf::validate_data_resource_config::Request>,
    ) -> Result<Response<tf::validate_data_resource_config::Response>, Status> {
        let known = data::schemas()
            .iter()
            .any(|(n, _)| *n == r.get_ref().type_name);
        let diagnostics = if known {
            vec![]
        } else {
            vec![unknown_type("data source", &r.get_ref().type_name)]
        };
        Ok(Response::new(tf::validate_data_resource_config::Response {
            diagnostics,
        }))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<tf::upgrade_resource_state::Request>,
    ) -> Result<Response<tf::upgrade_resource_state::Response>, Status> {
        // Schema version 0 is the only one so far: the stored JSON is re-encoded as it is.
        let r = r.get_ref();
        let raw = r
            .raw_state
            .as_ref()
            .map(|s| s.json.as_slice())
            .unwrap_or_default();
        let (state, diagnostics) = if let Err(d) = resource(&r.type_name) {
            (None, vec![d])
        } else if r.version > 0 {
            (
                None,
                vec![schema::error(
                    "State from a newer provider",
                    format!(
                        "The state was written with schema version {}; this provider knows version 0. Use the provider version that wrote it.",
                        r.version
                    ),
                )],
            )
        } else {
            match value::from_json(raw) {
                Ok(v) => (encode(&v), vec![]),
                Err(e) => (
                    None,
                    vec![schema::error(
                        "The stored state cannot be read",
                        e.to_string(),
                    )],
                ),
            }
        };
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: state,
            diagnostics,
        }))
    }

    async fn configure_provider(
        &self,
        r: Request<tf::configure_provider::Request>,
    ) -> Result<Response<tf::configure_provider::Response>, Status> {
        let env = |k: &str| std::env::var(k).ok();
        let result = decode(r.get_ref().config.as_ref())
            .and_then(|c| settings(&c, &env))
            .and_then(|s| {
                Client::new(&s).map_err(|e| {
                    schema::error("Invalid Tribune provider configuration", e.to_string())
                })
            });
        let diagnostics = match result {
            Ok(c) => {
                *self.client.write().await = Some(Arc::new(c));
                vec![]
            }
            Err(d) => vec![d],
        };
        Ok(Response::new(tf::configure_provider::Response {
            diagnostics,
        }))
    }

    async fn read_resource(
        &self,
        r: Request<tf::read_resource::Request>,
    ) -> Result<Response<tf::read_resource::Response>, Status> {
        let r = r.get_ref();
        let result = async {
            let current = decode(r.current_state.as_ref())?;
            let kind = resource(&r.type_name)?;
            let client = self.client().await?;
            match kind {
                Resource::Policy => policy::read(&client, &current).await,
                Resource::Enclave => enclave::read(&client, &current).await,
            }
        }
        .await;
        let (new_state, diagnostics) = match result {
            Ok(v) => (encode(&v), vec![]),
            // On failure the state stays as it was.
            Err(d) => (r.current_state.clone(), vec![d]),
        };
        Ok(Response::new(tf::read_resource::Response {
            new_state,
            diagnostics,
            private: r.private.clone(),
        }))
    }

    async fn plan_resource_change(
        &self,
        r: Request<tf::plan_resource_change::Request>,
    ) -> Result<Response<tf::plan_resource_change::Response>, Status> {
        let r = r.get_ref();
        let result = (|| {
            let kind = resource(&r.type_name)?;
            let prior = decode(r.prior_state.as_ref())?;
            let proposed = decode(r.proposed_new_state.as_ref())?;
            Ok(match kind {
                Resource::Policy => policy::plan(&prior, &proposed),
                Resource::Enclave => enclave::plan(&prior, &proposed),
            })
        })();
        let resp = match result {
            Ok((planned, replace)) => tf::plan_resource_change::Response {
                planned_state: encode(&planned),
                requires_replace: replace.into_iter().map(schema::path).collect(),
                planned_private: r.prior_private.clone(),
                diagnostics: vec![],
            },
            Err(d) => tf::plan_resource_change::Response {
                diagnostics: vec![d],
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        r: Request<tf::apply_resource_change::Request>,
    ) -> Result<Response<tf::apply_resource_change::Response>, Status> {
        let r = r.get_ref();
        let result = async {
            let kind = resource(&r.type_name)?;
            let prior = decode(r.prior_state.as_ref())?;
            let planned = decode(r.planned_state.as_ref())?;
            let client = self.client().await?;
            match kind {
                Resource::Policy => policy::apply(&client, &prior, &planned).await,
                Resource::Enclave => enclave::apply(&client, &prior, &planned).await,
            }
        }
        .await;
        let (new_state, diagnostics) = match result {
            Ok(v) => (encode(&v), vec![]),
            // Nothing was written: the object stays as it was before.
            Err(d) => (r.prior_state.clone(), vec![d]),
        };
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state,
            private: vec![],
            diagnostics,
        }))
    }

    async fn import_resource_state(
        &self,
        r: Request<tf::import_resource_state::Request>,
    ) -> Result<Response<tf::import_resource_state::Response>, Status> {
        let r = r.get_ref();
        let result = async {
            let kind = resource(&r.type_name)?;
            let client = self.client().await?;
            match kind {
                Resource::Policy => policy::import(&client, &r.id).await,
                Resource::Enclave => enclave::import(&client, &r.id).await,
            }
        }
        .await;
        let resp = match result {
            Ok(v) => tf::import_resource_state::Response {
                imported_resources: vec![tf::import_resource_state::ImportedResource {
                    type_name: r.type_name.clone(),
                    state: encode(&v),
                    private: vec![],
                }],
                diagnostics: vec![],
            },
            Err(d) => tf::import_resource_state::Response {
                imported_resources: vec![],
                diagnostics: vec![d],
            },
        };
        Ok(Response::new(resp))
    }

    async fn read_data_source(
        &self,
        r: Request<tf::read_data_source::Request>,
    ) -> Result<Response<tf::read_data_source::Response>, Status> {
        let r = r.get_ref();
        let result = async {
            let config = decode(r.config.as_ref())?;
            data::read(&*self.client().await?, &r.type_name, &config).await
        }
        .await;
        let (state, diagnostics) = match result {
            Ok(v) => (encode(&v), vec![]),
            Err(d) => (None, vec![d]),
        };
        Ok(Response::new(tf::read_data_source::Response {
            state,
            diagnostics,
        }))
    }

    async fn stop_provider(
        &self,
        _r: Request<tf::stop_provider::Request>,
    ) -> Result<Response<tf::stop_provider::Response>, Status> {
        // Every call is bounded by `timeout_seconds`; nothing long-running to interrupt.
        Ok(Response::new(tf::stop_provider::Response {
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_block_then_the_environment() {
        let env = |k: &str| match k {
            ENV_ENDPOINT => Some("a:1, b:2".to_string()),
            ENV_TOKEN => Some("tbt_x".to_string()),
            ENV_CA => Some("/env/ca.pem".to_string()),
            _ => None,
        };
        let s = settings(&Value::Null, &env).unwrap();
        assert_eq!(s.endpoints, ["a:1", "b:2"]);
        assert_eq!(s.token.as_deref(), Some("tbt_x"));
        assert_eq!(s.ca, Some(PathBuf::from("/env/ca.pem")));
        assert_eq!(s.timeout, Duration::from_secs(TIMEOUT_S_DEFAULT));
        let block = Value::object([
            ("endpoints", Value::List(vec![Value::string("c:3")])),
            ("ca", Value::string("/block/ca.pem")),
            ("timeout_seconds", Value::Int(5)),
        ]);
        let s = settings(&block, &env).unwrap();
        assert_eq!(s.endpoints, ["c:3"]);
        assert_eq!(s.ca, Some(PathBuf::from("/block/ca.pem")));
        assert_eq!(s.timeout, Duration::from_secs(5));
        let bad = Value::object([("timeout_seconds", Value::Int(0))]);
        assert_eq!(
            settings(&bad, &env).unwrap_err().attribute,
            Some(schema::path("timeout_seconds"))
        );
    }
}
