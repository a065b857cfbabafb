//! The `caseroom` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() {
    caseroom::memory::limit_arenas();
    // Before anything can open a TLS connection: rustls has two crypto
    // providers compiled in and would panic choosing (platform-notes).
    #[cfg(feature = "slack")]
    caseroom::platform::slack::install_crypto_provider();
    quiet_on_closed_pipe();
    let cli = caseroom::cli::Cli::parse();
    caseroom::app::init_tracing();
    match caseroom::cli::main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) if is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Output to a closed pipe (`caseroom export | head`) is not an error: the
/// reader has what it wanted.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `print!` panics when stdout is a closed pipe (Rust ignores SIGPIPE);
/// end quietly instead of printing a panic message.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
