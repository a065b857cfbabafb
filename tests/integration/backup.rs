//! Export and import as a backup tool, and the command line's manners:
//! an import that fails half way leaves the data dir as it was, offline
//! commands need no secrets, a closed pipe ends output quietly, and the
//! data dir is private to the bot's user.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::util::{bin, caseroom, caseroom_ok, root};

/// A synthetic export of `n` cases (the hidden `gen-export` command).
fn generated_export(dir: &Path, n: u64) -> std::path::PathBuf {
    let out = Command::new(bin())
        .args(["gen-export", "--cases", &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = dir.join(format!("export-{n}.jsonl"));
    std::fs::write(&file, out.stdout).unwrap();
    file
}

/// Case list of a data dir (for "unchanged" checks).
fn listing(data: &Path) -> String {
    caseroom_ok(data, &["case", "list"])
}

#[test]
fn import_restores_every_case_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_export(dir.path(), 2_500);
    let data = dir.path().join("data");
    caseroom_ok(&data, &["import", file.to_str().unwrap()]);
    let list = listing(&data);
    assert_eq!(list.lines().count(), 2_500);
    // Exporting again gives the same records, line for line.
    let again = caseroom_ok(&data, &["export"]);
    assert_eq!(again, std::fs::read_to_string(&file).unwrap());
    // No staging dir is left next to the data dir.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn import_that_fails_half_way_leaves_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_export(dir.path(), 3_000);
    // Damage a case near the end: everything before it is valid and would
    // already be written.
    let text = std::fs::read_to_string(&file).unwrap();
    let needle = "\"external_id\":\"GEN-2900\"";
    let damaged = text.replacen(
        &format!("{needle},\"subject\":\"Payment failed\""),
        &format!("{needle},\"subject\":\"tampered\""),
        1,
    );
    assert_ne!(damaged, text);
    let bad = dir.path().join("damaged.jsonl");
    std::fs::write(&bad, damaged).unwrap();

    // Into a new data dir: it is not created.
    let fresh = dir.path().join("fresh");
    let out = caseroom(&fresh, &["import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("C-2900") && err.contains("unchanged"), "{err}");
    assert!(!fresh.exists(), "a failed import created the data dir");

    // Into an existing, empty data dir: it stays empty.
    let empty = dir.path().join("empty");
    assert_eq!(listing(&empty).trim(), "no cases");
    assert!(
        !caseroom(&empty, &["import", bad.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(listing(&empty).trim(), "no cases");

    // With --force into a store that holds cases: they are all still there,
    // and nothing from the export was added.
    let used = dir.path().join("used");
    caseroom_ok(
        &used,
        &["case", "open", "--external-id", "ZD-1", "--body", "x"],
    );
    let before = listing(&used);
    let mut renumbered = String::new();
    for line in std::fs::read_to_string(&bad).unwrap().lines() {
        // Move the export's case numbers past C-1.
        renumbered.push_str(&line.replace("\"C-", "\"C-10"));
        renumbered.push('\n');
    }
    std::fs::write(&bad, renumbered).unwrap();
    let out = caseroom(&used, &["import", "--force", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(listing(&used), before);

    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn import_refuses_a_dir_with_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_export(dir.path(), 3);
    let target = dir.path().join("home");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("notes.txt"), "mine").unwrap();
    let out = caseroom(&target, &["import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(target.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// The shipped config with the webhook enabled (so it names a secret).
fn webhook_config(dir: &Path) -> std::path::PathBuf {
    let src = std::fs::read_to_string(root().join("config/caseroom.toml"))
        .unwrap()
        .replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", dir.join("data").display()),
        )
        .replace(
            "enabled = false\n# Address the webhook",
            "enabled = true\n# Address the webhook",
        );
    let path = dir.join("caseroom.toml");
    std::fs::write(&path, src).unwrap();
    path
}

fn without_secret(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .current_dir(root())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CASEROOM_WEBHOOK_SECRET")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn offline_commands_run_without_the_webhook_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(dir.path());
    let file = generated_export(dir.path(), 5);
    for args in [
        vec!["import", file.to_str().unwrap()],
        vec!["case", "list"],
        vec!["case", "show", "C-1"],
        vec!["export"],
        vec!["check"],
        vec!["suggest", "付款失败"],
    ] {
        let out = without_secret(&config, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `check` mentions that `run` will need it.
    let out = without_secret(&config, &["check"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CASEROOM_WEBHOOK_SECRET"));
    // `run` with the webhook enabled insists.
    let out = without_secret(&config, &["run"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CASEROOM_WEBHOOK_SECRET"));
}

/// Runs `caseroom ARGS` and closes its stdout after reading a little.
fn read_then_close(data: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .current_dir(root())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated_export(dir.path(), 3_000);
    let data = dir.path().join("data");
    caseroom_ok(&data, &["import", file.to_str().unwrap()]);
    for args in [&["export"][..], &["case", "list"][..]] {
        let (code, stderr) = read_then_close(&data, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn data_dir_and_its_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    caseroom_ok(
        &data,
        &["case", "open", "--external-id", "ZD-1", "--body", "x"],
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let want = if entry.file_type().unwrap().is_dir() {
            0o700
        } else {
            files += 1;
            0o600
        };
        assert_eq!(mode(&entry.path()), want, "{}", entry.path().display());
    }
    assert!(files >= 2, "sled wrote its files");
    // An existing dir with loose permissions is tightened on open.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    caseroom_ok(&data, &["case", "list"]);
    assert_eq!(mode(&data), 0o700);
    // An import's result is private too.
    let file = generated_export(dir.path(), 2);
    let restored = dir.path().join("restored");
    caseroom_ok(&restored, &["import", file.to_str().unwrap()]);
    assert_eq!(mode(&restored), 0o700);
}
