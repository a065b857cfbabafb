//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `caseroom` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caseroom"))
}

/// The repository root (where `config/` and `playbooks/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `caseroom --data-dir DIR ARGS...` from the repository root.
pub fn caseroom(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(root())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("caseroom runs")
}

/// Like [`caseroom`], but insists on success and returns stdout.
pub fn caseroom_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = caseroom(data_dir, args);
    assert!(
        out.status.success(),
        "caseroom {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
