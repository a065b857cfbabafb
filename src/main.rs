//! The `caseroom` binary: parse the command line, set up logging, run.

use clap::Parser;

fn main() {
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
