//! The `caseroom` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() {
    // Before anything can open a TLS connection: rustls has two crypto
    // providers compiled in and would panic choosing (platform-notes).
    #[cfg(feature = "slack")]
    caseroom::platform::slack::install_crypto_provider();
    let cli = caseroom::cli::Cli::parse();
    caseroom::app::init_tracing();
    match caseroom::cli::main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
