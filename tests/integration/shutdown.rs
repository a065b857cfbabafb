//! Stopping the running binary: SIGTERM and SIGINT end it within 5 s in
//! terminal mode with stdin still open and with the webhook under load
//! (no ticket acknowledged with 201 is lost), and piped commands get every
//! reply before the bot exits at end of input.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caseroom::http::signature::sign;

use super::util::{bin, caseroom, free_port, root, webhook_config};

/// The limit the issue sets for every mode.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
const SECRET: &str = "shutdown-test-secret";

/// Starts `caseroom run` with stdin and stdout piped (stdin stays open
/// until the test drops it) and its log in `log` (a file, so a full pipe
/// never blocks the bot).
fn start(args: &[&str], envs: &[(&str, &str)], log: &Path) -> Child {
    let mut cmd = Command::new(bin());
    cmd.current_dir(root())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start caseroom")
}

/// Sends `signal` (e.g. "TERM") and returns how long the process took to
/// exit and whether it exited successfully. Kills it after 30 s.
pub fn stop_with(child: &mut Child, signal: &str) -> (Duration, bool) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (sent.elapsed(), status.success());
        }
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            return (sent.elapsed(), false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads the child's stdout in the background until `needle` shows up.
fn wait_for_stdout(child: &mut Child, needle: &str) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.lock().unwrap().contains(needle) {
        assert!(Instant::now() < deadline, "no `{needle}` on stdout");
        std::thread::sleep(Duration::from_millis(20));
    }
    out
}

/// Starts the bot in terminal mode on `dir/data` (log in `dir/log`) and
/// waits until it has answered an `!escalate`, so it is running and
/// reading stdin. Returns the child and what it printed.
fn terminal_bot(dir: &Path) -> (Child, Arc<Mutex<String>>) {
    let data = dir.join("data");
    let mut child = start(
        &["--data-dir", data.to_str().unwrap(), "run"],
        &[],
        &dir.join("log"),
    );
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all("!escalate 付款失败\n".as_bytes()).unwrap();
    stdin.flush().unwrap();
    let out = wait_for_stdout(&mut child, "Opened **C-1**");
    (child, out)
}

fn terminal_mode_stops_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (mut child, _) = terminal_bot(dir.path());
    // stdin stays open: the bot must not wait for it.
    let (took, ok) = stop_with(&mut child, signal);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(ok, "SIG{signal}: unclean exit\n{log}");
    assert!(took < EXIT_WITHIN, "SIG{signal}: exit took {took:?}\n{log}");
    eprintln!("terminal mode, SIG{signal} with stdin open: exit in {took:?}");
}

/// While the bot runs, a second process on its data dir (a command an
/// operator types, or a second bot) is refused with one line that names
/// the dir once and says what to do; the bot is unharmed.
#[test]
fn a_second_process_on_a_running_bots_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let (mut child, out) = terminal_bot(dir.path());
    for args in [&["case", "list"][..], &["run"][..]] {
        let second = caseroom(&data, args);
        let err = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("in use by another caseroom process"),
            "{args:?}: {err}"
        );
        let shown = data.display().to_string();
        assert_eq!(err.matches(&shown).count(), 1, "{args:?}: {err}");
    }
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"!queue\n").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.lock().unwrap().contains("Queue") {
        assert!(Instant::now() < deadline, "the bot stopped answering");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, ok) = stop_with(&mut child, "TERM");
    assert!(ok, "{}", std::fs::read_to_string(&log).unwrap());
}

#[test]
fn sigterm_in_terminal_mode_with_stdin_open_exits_within_5s() {
    terminal_mode_stops_on("TERM");
}

#[test]
fn sigint_in_terminal_mode_with_stdin_open_exits_within_5s() {
    terminal_mode_stops_on("INT");
}

#[test]
fn piped_commands_get_every_reply_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(bin())
        .current_dir(root())
        .args(["--data-dir", data.to_str().unwrap(), "run"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = "!escalate 我的卡付款失败了 卡号 4111.1111.1111.1111\n\
                 C-1: !claim\n\
                 C-1: !note called the customer\n\
                 !escalate refund not received for order 9981\n\
                 !queue\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    for reply in [
        "Opened **C-1**",
        "claimed **C-1**",
        "Opened **C-2**",
        "**Queue** — 2 open",
        "[card ****1111]",
    ] {
        assert!(stdout.contains(reply), "no `{reply}` in:\n{stdout}");
    }
    assert!(!stdout.contains("(no thread for"), "{stdout}");
    assert!(!stdout.contains("4111.1111"), "card shown: {stdout}");
    // The note landed in the case's history.
    let store = caseroom::store::Store::open(&data).unwrap();
    let events = store.events(caseroom::case::CaseId(1)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind.summary().contains("called the customer")),
        "{events:?}"
    );
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
pub fn http(addr: SocketAddr, req: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

pub fn post_ticket(addr: SocketAddr, ext: &str, secret: &str) -> Option<(u16, String)> {
    let body = serde_json::json!({
        "external_id": ext,
        "body": "付款失败，提示交易被拒绝，卡号 4111 1111 1111 1111",
        "channel": "web",
    })
    .to_string();
    let sig = sign(secret, jiff::Timestamp::now().as_second(), body.as_bytes());
    let req = format!(
        "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Caseroom-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(addr, &req)
}

pub fn wait_ready(addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    while Instant::now() < deadline {
        if let Some((200, _)) = http(addr, &req) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "caseroom did not become ready on {addr}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Tickets posted by [`load`].
pub struct Load {
    /// (external id, case id) of every ticket answered 201 or 200.
    pub acked: Arc<Mutex<Vec<(String, String)>>>,
    /// The status of every other answer.
    pub other: Arc<Mutex<Vec<u16>>>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Posts tickets from `clients` threads until `stop`.
pub fn load(
    addr: SocketAddr,
    clients: usize,
    tag: &str,
    secret: &'static str,
    stop: Arc<AtomicBool>,
) -> Load {
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let other: Arc<Mutex<Vec<u16>>> = Arc::default();
    let mut threads = Vec::new();
    for c in 0..clients {
        let (acked, other, stop) = (acked.clone(), other.clone(), stop.clone());
        let tag = tag.to_owned();
        threads.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let ext = format!("{tag}-{c}-{i}");
                match post_ticket(addr, &ext, secret) {
                    Some((200 | 201, body)) => {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let id = v["case_id"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().push((ext, id));
                    }
                    Some((status, _)) => other.lock().unwrap().push(status),
                    // Refused or cut off: not acknowledged, may be retried.
                    None => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }
    Load {
        acked,
        other,
        threads,
    }
}

/// `read_output: false` is a terminal that stopped reading (a full pipe,
/// ctrl-s): printing blocks, and shutdown must still end the process.
fn webhook_under_load_stops_on(signal: &str, read_output: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.path().join("caseroom.toml");
    std::fs::write(&cfg, webhook_config(dir.path(), port, mport)).unwrap();
    let log = dir.path().join("log");
    let mut child = start(
        &["--config", cfg.to_str().unwrap(), "run"],
        &[("CASEROOM_WEBHOOK_SECRET", SECRET)],
        &log,
    );
    // Read what the bot prints, as a terminal would.
    let mut stdout = child.stdout.take().unwrap();
    if read_output {
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    }
    wait_ready(addr, &log);
    let stop = Arc::new(AtomicBool::new(false));
    let Load {
        acked,
        other,
        threads,
    } = load(addr, 8, "load", SECRET, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "too few tickets acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Tickets keep arriving while the bot stops.
    let (took, ok) = stop_with(&mut child, signal);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(ok, "SIG{signal}: unclean exit\n{log}");
    assert!(took < EXIT_WITHIN, "SIG{signal}: exit took {took:?}\n{log}");
    if read_output {
        assert!(!log.contains("did not stop"), "{log}");
    }
    let other = other.lock().unwrap().clone();
    assert!(
        other.iter().all(|s| *s == 503 || *s == 429),
        "answers other than 201/200/503: {other:?}"
    );
    // Nothing acknowledged is lost.
    let acked = acked.lock().unwrap().clone();
    let store = caseroom::store::Store::open(&dir.path().join("data")).unwrap();
    for (ext, id) in &acked {
        let case = store
            .case_by_external(ext)
            .unwrap()
            .unwrap_or_else(|| panic!("ticket {ext} acknowledged as {id} but lost"));
        assert_eq!(&case.id.to_string(), id);
        assert!(!case.body.contains("4111 1111"), "card stored in clear");
    }
    eprintln!(
        "webhook under load, SIG{signal}: exit in {took:?}; {} tickets acknowledged, all stored; {} answered 503",
        acked.len(),
        other.iter().filter(|s| **s == 503).count()
    );
}

#[test]
fn sigterm_of_loaded_webhook_exits_within_5s_and_loses_no_ticket() {
    webhook_under_load_stops_on("TERM", true);
}

/// Found while writing these tests: with nobody reading stdout, a console
/// send blocked a runtime worker and shutdown waited for it.
#[test]
fn sigterm_exits_within_5s_when_nobody_reads_the_output() {
    webhook_under_load_stops_on("TERM", false);
}

#[test]
fn sigint_of_loaded_webhook_exits_within_5s_and_loses_no_ticket() {
    webhook_under_load_stops_on("INT", true);
}

/// The Matrix bot with the webhook, under load with a delivery backlog
/// (Synapse rate-limits the bot): SIGTERM/SIGINT end it within 5 s, no
/// acknowledged ticket is lost, and every case's root message is either on
/// Synapse or still in the outbox for the next start.
#[cfg(feature = "matrix")]
mod matrix {
    use matrix_sdk::ruma::api::client::room::create_room;

    use super::super::matrix_adapter::{synapse, unique};
    use super::*;

    const SECRET: &str = "matrix-shutdown-secret";

    fn matrix_bot_stops_on(signal: &str) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let syn = synapse();
        let bot = syn.register(&unique("stopbot"), "botpass");
        let agent_id = syn.register(&unique("stopagent"), "agentpass");
        let team = rt.block_on(async {
            let agent = syn.login(&agent_id, "agentpass").await;
            let mut request = create_room::v3::Request::new();
            request.invite = vec![bot.parse().unwrap()];
            agent
                .create_room(request)
                .await
                .unwrap()
                .room_id()
                .to_owned()
        });

        let dir = tempfile::tempdir().unwrap();
        let (port, mport) = (free_port(), free_port());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let cfg = webhook_config(dir.path(), port, mport)
            .replace("team = \"team\"", &format!("team = \"{team}\""))
            .replace("intake = [\"intake\"]", &format!("intake = [\"{team}\"]"))
            .replace("oncall = \"oncall\"", &format!("oncall = \"{team}\""))
            .replace(
                "[matrix]\n# Run the Matrix adapter.\nenabled = false",
                "[matrix]\n# Run the Matrix adapter.\nenabled = true",
            )
            .replace(
                "homeserver = \"https://matrix.example.org\"",
                &format!("homeserver = \"{}\"", syn.url),
            )
            .replace(
                "user_id = \"@caseroom:example.org\"",
                &format!("user_id = \"{bot}\""),
            );
        assert!(
            cfg.contains(&syn.url) && cfg.contains(&bot),
            "config not rewritten"
        );
        let cfg_path = dir.path().join("caseroom.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("log");
        let mut child = start(
            &["--config", cfg_path.to_str().unwrap(), "run"],
            &[
                ("CASEROOM_MATRIX_PASSWORD", "botpass"),
                ("CASEROOM_MATRIX_STORE_PASSPHRASE", "shutdown-store-pw"),
                ("CASEROOM_WEBHOOK_SECRET", SECRET),
                ("NO_PROXY", "127.0.0.1,localhost"),
            ],
            &log,
        );
        wait_ready(addr, &log);
        let stop = Arc::new(AtomicBool::new(false));
        let Load {
            acked,
            other,
            threads,
        } = load(addr, 8, &unique("mx"), SECRET, stop.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < 80 {
            assert!(Instant::now() < deadline, "too few tickets acknowledged");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (took, ok) = stop_with(&mut child, signal);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(ok, "SIG{signal}: unclean exit\n{log}");
        assert!(took < EXIT_WITHIN, "SIG{signal}: exit took {took:?}\n{log}");
        let other = other.lock().unwrap().clone();
        assert!(
            other.iter().all(|s| *s == 503 || *s == 429),
            "answers other than 201/200/503: {other:?}"
        );

        let acked = acked.lock().unwrap().clone();
        let store = caseroom::store::Store::open(&dir.path().join("data")).unwrap();
        let pending = store.pending_outbox().unwrap();
        let (mut posted, mut queued) = (0, 0);
        for (ext, id) in &acked {
            let case = store
                .case_by_external(ext)
                .unwrap()
                .unwrap_or_else(|| panic!("ticket {ext} acknowledged as {id} but lost"));
            let key = caseroom::message::root_key(case.id);
            if store.posted(&key).unwrap().is_some() {
                posted += 1;
            } else {
                assert!(
                    pending
                        .iter()
                        .any(|(_, m)| m.record_as.as_deref() == Some(key.as_str())),
                    "{id}: root message neither posted nor queued"
                );
                queued += 1;
            }
        }
        eprintln!(
            "matrix bot under load, SIG{signal}: exit in {took:?}; {} tickets acknowledged, all stored; \
             {posted} roots posted, {queued} queued for the next start ({} messages pending)",
            acked.len(),
            pending.len()
        );
    }

    #[test]
    fn sigterm_of_loaded_matrix_bot_exits_within_5s_and_keeps_its_backlog() {
        matrix_bot_stops_on("TERM");
    }

    #[test]
    fn sigint_of_loaded_matrix_bot_exits_within_5s_and_keeps_its_backlog() {
        matrix_bot_stops_on("INT");
    }
}

/// A webhook-only service has no terminal: stdin is `/dev/null` under
/// systemd. The end of that "input" must not stop the webhook.
#[test]
fn a_webhook_service_with_stdin_closed_keeps_serving_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = dir.path().join("caseroom.toml");
    std::fs::write(&cfg, webhook_config(dir.path(), port, mport)).unwrap();
    let log = dir.path().join("log");
    let mut child = start(
        &["--config", cfg.to_str().unwrap(), "run"],
        &[("CASEROOM_WEBHOOK_SECRET", SECRET)],
        &log,
    );
    drop(child.stdin.take());
    wait_ready(addr, &log);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the service stopped at end of input"
    );
    assert!(matches!(post_ticket(addr, "svc-1", SECRET), Some((201, _))));
    let (took, ok) = stop_with(&mut child, "TERM");
    assert!(ok && took < Duration::from_secs(5), "{took:?} {ok}");
}
