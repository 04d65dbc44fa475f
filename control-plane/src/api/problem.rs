//! RFC 9457 problem details: every API error has a status, a title, a detail a person can act on
//! and, where waiting helps, a retry hint.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::validate::PolicyProblem;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<PolicyProblem>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://tribune.dev/problems/{kind}"),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_ms: None,
            current_version: None,
            diagnostics: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>, current_version: Option<u64>) -> Self {
        Self {
            current_version,
            ..Self::new(StatusCode::CONFLICT, "version-conflict", detail)
        }
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
    }

    /// 401: nobody we know made this request.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// 403: the caller is known but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<crate::auth::Denied> for Problem {
    fn from(d: crate::auth::Denied) -> Self {
        Problem::forbidden(d.to_string())
    }
}

impl From<crate::auth::AuthError> for Problem {
    fn from(e: crate::auth::AuthError) -> Self {
        Problem::unauthorized(e.to_string())
    }
}

impl From<super::bounds::OutOfBounds> for Problem {
    fn from(e: super::bounds::OutOfBounds) -> Self {
        if e.too_large {
            Problem::too_large(e.to_string())
        } else {
            Problem::bad_request(e.to_string())
        }
    }
}

impl From<ControllerError> for Problem {
    fn from(e: ControllerError) -> Self {
        let retry = e.retry_after_ms();
        let mut p = match &e {
            ControllerError::NoLeader { .. } => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "no-leader", e.to_string())
            }
            ControllerError::Unavailable { .. } | ControllerError::NotLeader { .. } => {
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            }
            ControllerError::OutcomeUnknown { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome-unknown",
                e.to_string(),
            ),
            ControllerError::Invalid(_) => Problem::bad_request(e.to_string()),
            ControllerError::Internal(_) => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            ControllerError::Integrity(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "state-diverged",
                e.to_string(),
            ),
        };
        p.retry_after_ms = retry;
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = self.retry_after_ms;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(ms) = retry {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
