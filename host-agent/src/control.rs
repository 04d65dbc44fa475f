//! The control socket: `DATA_DIR/agent.sock`, one JSON request line, one JSON reply line.
//! This is how `tribune agent apply` and `tribune agent status` reach a running agent (and a
//! benchmark its metrics: `Metrics`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::agent::Request;
use crate::error::{AgentError, Result};
use crate::plan::Plan;

pub const SOCKET_FILE: &str = "agent.sock";
/// Largest request accepted (a plan for thousands of enclaves fits).
pub const REQUEST_BYTES_MAX: u64 = 8 << 20;

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    Apply(Plan),
    Status,
    /// The agent's metrics in the Prometheus text format (as its metrics listener serves
    /// them; also where it has none, or it is in a network namespace the caller is not).
    Metrics,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(serde_json::Value),
    Error(String),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Binds the socket and forwards requests to the agent loop until the loop goes away.
pub fn serve(data_dir: &Path, agent: mpsc::Sender<Request>) -> Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| AgentError::io("bind", &path, e))?;
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, agent).await {
                    tracing::warn!("control socket: {e}");
                }
            });
        }
    }))
}

async fn handle(stream: UnixStream, agent: mpsc::Sender<Request>) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r.take(REQUEST_BYTES_MAX))
        .read_line(&mut line)
        .await
        .map_err(|e| AgentError::Control(e.to_string()))?;
    let reply = match serde_json::from_str::<ClientRequest>(&line) {
        Err(e) => Reply::Error(format!("bad request: {e}")),
        Ok(ClientRequest::Apply(plan)) => {
            let (tx, rx) = oneshot::channel();
            let _ = agent.send(Request::Apply(plan, tx)).await;
            match rx.await {
                Ok(Ok(rep)) => Reply::Ok(serde_json::to_value(rep).unwrap_or_default()),
                Ok(Err(e)) => Reply::Error(e),
                Err(_) => Reply::Error("agent is shutting down".into()),
            }
        }
        Ok(ClientRequest::Metrics) => Reply::Ok(serde_json::Value::String(
            crate::metrics::get().encode(tribune_telemetry::Exposition::Classic),
        )),
        Ok(ClientRequest::Status) => {
            let (tx, rx) = oneshot::channel();
            let _ = agent.send(Request::Status(tx)).await;
            match rx.await {
                Ok(s) => Reply::Ok(serde_json::to_value(s).unwrap_or_default()),
                Err(_) => Reply::Error("agent is shutting down".into()),
            }
        }
    };
    let mut text = serde_json::to_string(&reply).map_err(|e| AgentError::Control(e.to_string()))?;
    text.push('\n');
    w.write_all(text.as_bytes())
        .await
        .map_err(|e| AgentError::Control(e.to_string()))
}

/// Sends one request to the agent of `data_dir` and returns its reply value.
pub async fn request(data_dir: &Path, req: &ClientRequest) -> Result<serde_json::Value> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        AgentError::Control(format!(
            "no agent listening on {} ({e}); start one with `tribune agent run --data-dir {}`",
            path.display(),
            data_dir.display()
        ))
    })?;
    let (r, mut w) = stream.into_split();
    let mut text = serde_json::to_string(req).map_err(|e| AgentError::Control(e.to_string()))?;
    text.push('\n');
    w.write_all(text.as_bytes())
        .await
        .map_err(|e| AgentError::Control(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(r.take(REQUEST_BYTES_MAX))
        .read_line(&mut line)
        .await
        .map_err(|e| AgentError::Control(e.to_string()))?;
    match serde_json::from_str::<Reply>(&line) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Error(e)) => Err(AgentError::Control(e)),
        Err(e) => Err(AgentError::Control(format!("bad reply {line:?}: {e}"))),
    }
}
