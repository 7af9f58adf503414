//! `northstar`: the node, and the command line a person uses to talk to one.
//!
//! The node library lives in `northstar_node`; the commands that act as a client (keys, DIDs,
//! and later spaces and beams) live in [`cli`] and use the SDK, as any app would.

mod cli;
mod serve;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, outermost first.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
