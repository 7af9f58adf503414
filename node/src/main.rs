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
    let json = args.json();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if json {
                // One JSON object on stderr, so a script reading stdout sees only results.
                eprintln!("{}", cli::error_json(&err));
            } else {
                // One line: the error and its causes, outermost first.
                eprintln!("error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}
