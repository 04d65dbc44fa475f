//! `tribune api openapi`: the HTTP/JSON API's OpenAPI 3.1 document, the one every controller of
//! this version serves at `GET /v1/openapi.json` (`tribune_controller::api::openapi`). It is
//! generated from the code, so it needs no cluster: this binary holds the same document.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum ApiCmd {
    /// Print the OpenAPI 3.1 document of the HTTP/JSON API (what `GET /v1/openapi.json`
    /// answers on a controller of this version).
    Openapi,
}

pub fn run(c: ApiCmd) -> anyhow::Result<ExitCode> {
    match c {
        ApiCmd::Openapi => {
            let doc = tribune_controller::api::openapi::document_json();
            let mut out = std::io::stdout().lock();
            writeln!(out, "{doc}").context("write the document to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
