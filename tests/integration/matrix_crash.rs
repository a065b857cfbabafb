//! Crash test of the running binary: tickets over HTTP, SIGKILL mid-load,
//! restart. Every ticket that got 201/200 is in the store, and each case's
//! root message is on Synapse exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrix_sdk::ruma::api::client::message::get_message_events;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::{OwnedRoomId, UInt};
use serde_json::Value;

use super::matrix_adapter::{synapse, unique};
use super::util::{bin, free_port, post_ticket, root, wait_healthy, webhook_config};

use super::util::WEBHOOK_SECRET as SECRET;

fn start(config: &std::path::Path, password: &str) -> Child {
    Command::new(bin())
        .current_dir(root())
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("CASEROOM_MATRIX_PASSWORD", password)
        .env("CASEROOM_MATRIX_STORE_PASSPHRASE", "crash-store-pw")
        .env("CASEROOM_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start caseroom")
}

async fn room_roots(client: &matrix_sdk::Client, room: &OwnedRoomId, bot: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut request = get_message_events::v3::Request::backward(room.clone());
        request.limit = UInt::from(1000u32);
        request.from = from.clone();
        let response = client.send(request).await.expect("room messages");
        for raw in &response.chunk {
            let v: Value = serde_json::from_str(raw.json().get()).unwrap();
            if v["type"] == "m.room.message"
                && v["sender"] == bot
                && v["content"]["m.relates_to"]["rel_type"] != "m.thread"
            {
                let body = v["content"]["body"].as_str().unwrap_or_default();
                if let Some(rest) = body.strip_prefix("🎫 **") {
                    out.push(rest.split("**").next().unwrap_or_default().to_owned());
                }
            }
        }
        match response.end {
            Some(end) if !response.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_ticket_and_posts_each_root_once() {
    let syn = synapse();
    let bot = syn.register(&unique("crashbot"), "botpass");
    let agent_id = syn.register(&unique("crashagent"), "agentpass");
    let agent = syn.login(&agent_id, "agentpass").await;
    let mut request = create_room::v3::Request::new();
    request.invite = vec![bot.parse().unwrap()];
    let team = agent
        .create_room(request)
        .await
        .unwrap()
        .room_id()
        .to_owned();

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
    let cfg_path = dir.path().join("caseroom.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    let mut child = start(&cfg_path, "botpass");
    wait_healthy(addr).await;

    // Load: 8 clients send tickets; the binary is killed mid-stream.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, stop) = (acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let ext = format!("crash-{c}-{i}");
                if let Some((status, body)) = post_ticket(addr, &ext).await
                    && (status == 201 || status == 200)
                {
                    let v: Value =
                        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap_or("{}"))
                            .unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .insert(ext, v["case_id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 120 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Restart: pending messages are delivered, none twice.
    let mut child = start(&cfg_path, "botpass");
    wait_healthy(addr).await;
    let expected: BTreeSet<String> = acked.values().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let roots: BTreeSet<String> = room_roots(&agent, &team, &bot).await.into_iter().collect();
        if expected.is_subset(&roots) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "root messages missing: {:?}",
            expected.difference(&roots).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let anything still queued go out, then stop cleanly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "clean shutdown: {status:?}");

    let roots = room_roots(&agent, &team, &bot).await;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &roots {
        *counts.entry(r).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "root messages posted twice: {dupes:?}");
    let store = caseroom::store::Store::open(&dir.path().join("data")).unwrap();
    for (ext, id) in &acked {
        let case = store
            .case_by_external(ext)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged ticket {ext} lost"));
        assert_eq!(&case.id.to_string(), id);
    }
    eprintln!(
        "crash test: {} tickets acknowledged before SIGKILL, {} cases stored, {} root messages, no duplicates",
        acked.len(),
        store.case_count(),
        roots.len()
    );
}

/// Sends SIGTERM (graceful shutdown) via the `kill` command.
fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}
