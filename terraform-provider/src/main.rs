//! `terraform-provider-tribune`: a Terraform provider (plugin protocol 6 over gRPC) for
//! Tribune's policies, served on our tonic stack.
//!
//! Start-up follows go-plugin's handshake, which Terraform (1.0 and later) drives:
//! 1. Terraform starts the binary with `TF_PLUGIN_MAGIC_COOKIE` set (without it a person ran
//!    it by hand: say so and exit) and, with AutoMTLS, its own certificate in
//!    `PLUGIN_CLIENT_CERT`.
//! 2. The provider makes a fresh self-signed certificate, listens on loopback and prints one
//!    line, `1|6|tcp|127.0.0.1:PORT|grpc|BASE64-DER-CERT`, to stdout.
//! 3. Terraform connects over TLS (each side pins the other's certificate) and calls the
//!    `tfplugin6.Provider` service; at the end it calls `plugin.GRPCController/Shutdown`.
//!
//! Logs go to stderr, where Terraform collects them (`TF_LOG=debug` shows them).

mod certs;
mod client;
mod provider;
mod resources;
mod schema;
mod value;

pub mod proto {
    pub mod tfplugin6 {
        tonic::include_proto!("tfplugin6");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tribune_tls::tokio_rustls::TlsAcceptor;

use proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use proto::tfplugin6::provider_server::ProviderServer;

/// go-plugin's handshake: the cookie Terraform sets for its providers.
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's core protocol version and our application protocol version (tfplugin6).
const CORE_PROTOCOL: u32 = 1;
const APP_PROTOCOL: u32 = 6;
/// How many TLS handshakes may be in flight at once (Terraform opens one connection).
const HANDSHAKES_MAX: usize = 16;
/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("--version" | "-V")) {
        println!("terraform-provider-tribune {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if std::env::var(MAGIC_COOKIE_KEY).ok().as_deref() != Some(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "This is a Terraform provider plugin: Terraform starts it, not a person.\n\
             Put it where Terraform finds it (a `dev_overrides` entry for `tribune/tribune` in a CLI \
             config file, see terraform-provider/docs/index.md) and run `terraform plan`."
        );
        return ExitCode::from(1);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRIBUNE_PROVIDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `plugin.GRPCController`: Terraform's request to stop.
struct Controller {
    stop: watch::Sender<bool>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(
        &self,
        _r: Request<proto::plugin::Empty>,
    ) -> Result<Response<proto::plugin::Empty>, Status> {
        let _ = self.stop.send(true);
        Ok(Response::new(proto::plugin::Empty {}))
    }
}

async fn serve() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on loopback")?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let (stop_tx, mut stop_rx) = watch::channel(false);

    let provider = ProviderServer::new(provider::Provider::default())
        .max_decoding_message_size(256 * 1024 * 1024);
    let controller = GrpcControllerServer::new(Controller { stop: stop_tx });
    let router = tonic::transport::Server::builder()
        .add_service(provider)
        .add_service(controller);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    // Ctrl-C in the terminal reaches the provider too; Terraform decides when to stop (it calls
    // StopProvider, then Shutdown), so the signal alone must not cut an apply short.
    tokio::spawn(async {
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
        }
    });

    match std::env::var("PLUGIN_CLIENT_CERT") {
        Ok(pem) if !pem.trim().is_empty() => {
            let client = certs::der_from_pem(&pem)?;
            let own = certs::generate()?;
            let config = certs::server_config(&own, client)?;
            let cert_b64 =
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(own.der.as_ref());
            let incoming = tls_incoming(listener, TlsAcceptor::from(Arc::new(config)));
            announce(&format!(
                "{CORE_PROTOCOL}|{APP_PROTOCOL}|tcp|{addr}|grpc|{cert_b64}"
            ))?;
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .context("serving the plugin")?;
        }
        _ => {
            // Terraform without AutoMTLS: plain gRPC on loopback, as go-plugin does then.
            tracing::warn!("PLUGIN_CLIENT_CERT is not set: serving without TLS");
            announce(&format!("{CORE_PROTOCOL}|{APP_PROTOCOL}|tcp|{addr}|grpc"))?;
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    shutdown,
                )
                .await
                .context("serving the plugin")?;
        }
    }
    Ok(())
}

/// Prints the handshake line and flushes it: Terraform waits for it.
fn announce(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing the handshake line")?;
    out.flush().context("writing the handshake line")
}

/// Accepted connections after their TLS handshake, each handshake in its own task (bounded in
/// number and time) so a slow one holds up no other.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<
    Result<tribune_tls::tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let (tx, rx) = mpsc::channel(HANDSHAKES_MAX);
    let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    continue;
                }
            };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!("TLS handshake with {peer} failed: {e}"),
                    Err(_) => tracing::warn!("TLS handshake with {peer} timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
