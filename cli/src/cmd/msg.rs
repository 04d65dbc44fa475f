//! `tribune msg send|recv`: inter-enclave messages from a shell inside an enclave (the
//! `tribune-msg` client over the socket named by `TRIBUNE_MSG_SOCKET`; `docs/messages.md`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use tribune_msg::{Client, SOCKET_ENV};

use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum MsgCmd {
    /// Send one message to another enclave of this host, and wait until it is delivered.
    Send(SendArgs),
    /// Receive messages for this enclave, each with its sender's attested name.
    Recv(RecvArgs),
}

#[derive(Args, Debug)]
pub struct SocketArg {
    /// The mediator socket (the agent sets TRIBUNE_MSG_SOCKET in every process enclave).
    #[arg(long, env = SOCKET_ENV)]
    pub socket: PathBuf,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The receiving enclave's name.
    pub to: String,
    /// The message; without it, standard input (at most 64 KiB).
    pub message: Option<String>,
    /// Return once the mediator has queued it, without waiting for delivery.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Args, Debug)]
pub struct RecvArgs {
    /// How many messages to receive before exiting.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Serialize)]
struct SendOutcome<'a> {
    from: &'a str,
    to: &'a str,
    id: u64,
    bytes: usize,
    outcome: &'static str,
}

#[derive(Serialize)]
struct Received<'a> {
    from: &'a str,
    bytes: usize,
    /// The payload as UTF-8 (invalid sequences replaced).
    text: String,
}

pub fn run(c: MsgCmd, format: Format) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match c {
            MsgCmd::Send(a) => send(a, format).await,
            MsgCmd::Recv(a) => recv(a, format).await,
        }
    })
}

async fn send(a: SendArgs, format: Format) -> anyhow::Result<ExitCode> {
    let payload = match a.message {
        Some(m) => m.into_bytes(),
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .take(tribune_msg::wire::PAYLOAD_BYTES_MAX as u64 + 1)
                .read_to_end(&mut b)
                .context("reading the message from standard input")?;
            b
        }
    };
    let client = Client::connect(&a.socket.socket).await?;
    // The mediator refusing or failing the message is the request failing (exit 1), not a
    // usage or environment error (exit 2).
    let sent = match client.send(&a.to, &payload).await {
        Ok(s) => s,
        Err(e @ tribune_msg::SendError::Refused { .. }) => return request_failed(&e, format),
        Err(e) => return Err(e.into()),
    };
    let id = sent.id();
    let outcome = if a.no_wait {
        "queued"
    } else {
        if let Err(e) = sent.delivered().await {
            return request_failed(&e, format);
        }
        "delivered"
    };
    let o = SendOutcome {
        from: client.name(),
        to: &a.to,
        id,
        bytes: payload.len(),
        outcome,
    };
    if !output::structured(format, &o)? {
        println!(
            "{outcome}: {} bytes from {} to {}",
            o.bytes,
            output::text(o.from),
            output::text(o.to)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn request_failed(e: &dyn std::error::Error, format: Format) -> anyhow::Result<ExitCode> {
    let text = e.to_string();
    eprintln!("error: {}", output::text(&text));
    if format.is_structured() {
        output::structured(format, &super::errors::document(&text, "request", false))?;
    }
    Ok(ExitCode::from(1))
}

async fn recv(a: RecvArgs, format: Format) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&a.socket.socket).await?;
    client.set_receive_window(a.count.clamp(1, 64) as u32);
    for _ in 0..a.count {
        let (from, payload) = client.recv().await?;
        let r = Received {
            from: &from,
            bytes: payload.len(),
            text: String::from_utf8_lossy(&payload).into_owned(),
        };
        if !output::structured(format, &r)? {
            println!("{}: {}", output::text(&from), output::text(&r.text));
        }
    }
    Ok(ExitCode::SUCCESS)
}
