//! Config: the shipped file is valid, and every class of mistake is reported
//! with file, key and line.

use std::collections::BTreeSet;
use std::path::Path;

use caseroom::config::{Config, ConfigErrors};

fn shipped() -> String {
    std::fs::read_to_string(super::util::root().join("config/caseroom.toml")).unwrap()
}

fn parse(src: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::parse(Path::new("cfg/test.toml"), src, &move |var| {
        env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
    })
}

fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .expect("needle in source")
        + 1
}

fn one_error(src: &str, env: &[(&str, &str)]) -> String {
    let errs = parse(src, env).expect_err("config should be refused");
    assert_eq!(errs.0.len(), 1, "{errs}");
    errs.0[0].to_string()
}

#[test]
fn shipped_config_is_valid_and_complete() {
    let cfg = parse(&shipped(), &[]).expect("shipped config parses");
    assert_eq!(cfg.command_prefix, "!");
    assert_eq!(cfg.rooms.team, "team");
    assert!(cfg.roles.has("local", caseroom::config::Role::Lead));
    assert!(!cfg.roles.has("stranger", caseroom::config::Role::Agent));
    assert_eq!(cfg.sla.policies.len(), 4);
    assert!(cfg.matrix.is_none(), "no platform enabled as shipped");
    assert_eq!(cfg.http.max_body_bytes, 65536);
    let cal = &cfg.sla.calendars["default"];
    assert_eq!(cal.holidays.len(), 3);
    assert!(cal.hours[5].is_none(), "saturday closed");
}

#[test]
fn every_key_in_the_shipped_config_is_commented() {
    // A key needs a comment right above it (or above the block of keys it
    // sits in), unless the same key was already explained in a sibling
    // table (`sla.policies.p2.calendar` after `sla.policies.p1.calendar`).
    let src = shipped();
    let lines: Vec<&str> = src.lines().collect();
    let mut explained: BTreeSet<(String, String)> = BTreeSet::new();
    let mut family = String::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            let table = h.trim_end_matches(']');
            family = table.rsplit_once('.').map_or(table, |(f, _)| f).to_owned();
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let key = t.split('=').next().unwrap().trim().to_owned();
        let mut j = i;
        let commented = loop {
            if j == 0 {
                break false;
            }
            j -= 1;
            let above = lines[j].trim();
            if above.starts_with('#') {
                break true;
            }
            if above.is_empty() || above.starts_with('[') {
                break false;
            }
        };
        if commented {
            explained.insert((family.clone(), key));
        } else {
            assert!(
                explained.contains(&(family.clone(), key)),
                "line {}: `{t}` has no comment",
                i + 1
            );
        }
    }
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let src = shipped().replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\nmax_bodybytes = 1",
    );
    let msg = one_error(&src, &[]);
    let line = line_of(&src, "max_bodybytes");
    assert!(
        msg.starts_with(&format!("cfg/test.toml:{line}: http.max_bodybytes: ")),
        "{msg}"
    );
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn wrong_type_names_file_key_and_line() {
    let src = shipped().replace("max_body_bytes = 65536", "max_body_bytes = \"lots\"");
    let msg = one_error(&src, &[]);
    let line = line_of(&src, "max_body_bytes = \"lots\"");
    assert!(
        msg.starts_with(&format!("cfg/test.toml:{line}: http.max_body_bytes: ")),
        "{msg}"
    );
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn body_limits_out_of_range_are_refused_with_the_range() {
    let src = shipped().replace("max_body_bytes = 65536", "max_body_bytes = 10");
    let msg = one_error(&src, &[]);
    let line = line_of(&src, "max_body_bytes = 10");
    assert_eq!(
        msg,
        format!("cfg/test.toml:{line}: http.max_body_bytes: must be between 1024 and 16777216")
    );
}

#[test]
fn missing_secret_names_the_variable() {
    let src = shipped().replace(
        "[matrix]\n# Run the Matrix adapter.\nenabled = false",
        "[matrix]\n# Run the Matrix adapter.\nenabled = true",
    );
    let msg = one_error(&src, &[("CASEROOM_MATRIX_STORE_PASSPHRASE", "store-pw")]);
    let line = line_of(&src, "password_env = \"CASEROOM_MATRIX_PASSWORD\"");
    assert_eq!(
        msg,
        format!(
            "cfg/test.toml:{line}: matrix.password_env: environment variable CASEROOM_MATRIX_PASSWORD is not set (it must hold the secret)"
        )
    );
    // With the variable set, it loads and the secret never shows in Debug.
    let cfg = parse(
        &src,
        &[
            ("CASEROOM_MATRIX_PASSWORD", "s3cret-pw"),
            ("CASEROOM_MATRIX_STORE_PASSPHRASE", "store-pw"),
        ],
    )
    .unwrap();
    let dbg = format!("{cfg:?}");
    assert!(
        !dbg.contains("s3cret-pw") && !dbg.contains("store-pw"),
        "secret leaked into Debug output"
    );
    assert_eq!(cfg.matrix.unwrap().password.unwrap().expose(), "s3cret-pw");
}

#[test]
fn webhook_secrets_come_from_the_environment() {
    let src = shipped().replace("[http]\n# Ticket webhook (POST /v1/tickets) and health endpoints. Off unless enabled.\nenabled = false", "[http]\nenabled = true");
    let msg = one_error(&src, &[]);
    assert!(
        msg.contains("http.secret_envs: environment variable CASEROOM_WEBHOOK_SECRET is not set"),
        "{msg}"
    );
    let cfg = parse(&src, &[("CASEROOM_WEBHOOK_SECRET", "k1")]).unwrap();
    assert_eq!(cfg.http.secrets.len(), 1);
}

#[test]
fn bad_duration_names_file_key_and_line() {
    let src = shipped().replacen(
        "first_response = \"15m\"",
        "first_response = \"15 minutes\"",
        1,
    );
    let msg = one_error(&src, &[]);
    let line = line_of(&src, "15 minutes");
    assert!(
        msg.starts_with(&format!(
            "cfg/test.toml:{line}: sla.policies.p1.first_response: `15 minutes` is not a duration"
        )),
        "{msg}"
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let src = shipped()
        .replacen("first_response = \"15m\"", "first_response = \"soon\"", 1)
        .replace(
            "timezone = \"Asia/Shanghai\"",
            "timezone = \"Mars/Olympus\"",
        )
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"")
        .replace("warnings = [\"50%\", \"80%\"]", "warnings = [\"150%\"]");
    let errs = parse(&src, &[]).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 4, "{text}");
    for key in [
        "sla.policies.p1.first_response",
        "sla.calendars.default.timezone",
        "http.listen",
        "sla.policies.p1.warnings",
    ] {
        assert!(
            text.contains(&format!(": {key}: ")),
            "{key} missing in:\n{text}"
        );
    }
    assert!(errs.0.iter().all(|e| e.line.is_some()));
}

#[test]
fn check_command_lists_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        shipped()
            .replace("resolution = \"4h\"", "resolution = \"4 hours\"")
            .replace("default_language = \"zh\"", "default_language = \"fr\""),
    )
    .unwrap();
    let out = std::process::Command::new(super::util::bin())
        .current_dir(super::util::root())
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("default_language: unknown language `fr`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sla.policies.p1.resolution: `4 hours` is not a duration"),
        "{stdout}"
    );
}

#[test]
fn matrix_example_config_is_valid() {
    let src =
        std::fs::read_to_string(super::util::root().join("config/matrix.example.toml")).unwrap();
    let errs = parse(&src, &[]).unwrap_err();
    assert!(
        errs.to_string()
            .contains("CASEROOM_MATRIX_PASSWORD is not set"),
        "{errs}"
    );
    let cfg = parse(
        &src,
        &[
            ("CASEROOM_MATRIX_PASSWORD", "pw"),
            ("CASEROOM_MATRIX_STORE_PASSPHRASE", "store-pw"),
        ],
    )
    .unwrap();
    let m = cfg.matrix.expect("matrix enabled");
    assert_eq!(m.user_id, "@caseroom:example.org");
    let e2ee = m.e2ee.expect("encryption is on by default");
    assert_eq!(e2ee.store_passphrase.expose(), "store-pw");
    assert!(e2ee.recovery_key.is_none(), "only a lost store needs it");
    assert_eq!(cfg.rooms.intake, ["#support-intake:example.org"]);
    assert!(
        cfg.roles
            .has("@lena:example.org", caseroom::config::Role::Lead)
    );
}

#[test]
fn discord_example_config_is_valid_and_ids_are_checked() {
    let src =
        std::fs::read_to_string(super::util::root().join("config/discord.example.toml")).unwrap();
    let errs = parse(&src, &[]).unwrap_err();
    assert!(
        errs.to_string()
            .contains("CASEROOM_DISCORD_TOKEN is not set"),
        "{errs}"
    );
    let cfg = parse(&src, &[("CASEROOM_DISCORD_TOKEN", "t")]).unwrap();
    let d = cfg.discord.expect("discord enabled");
    assert_eq!(d.application_id, 900000000000000001);
    assert_eq!(d.guild_id, 100000000000000001);
    assert_eq!(d.api_base_url, caseroom::config::DISCORD_API);
    assert_eq!(cfg.rooms.team, "1100000000000000001");
    // Ids must be positive numbers (strings or integers); the base URL a URL.
    let bad = src
        .replace(
            "application_id = \"900000000000000001\"",
            "application_id = \"my-app\"",
        )
        .replace(
            "guild_id = \"100000000000000001\"",
            "guild_id = 100000000000000001\napi_base_url = \"discord.com\"",
        );
    let errs = parse(&bad, &[("CASEROOM_DISCORD_TOKEN", "t")])
        .unwrap_err()
        .to_string();
    assert!(
        errs.contains("discord.application_id: must be a Discord id"),
        "{errs}"
    );
    assert!(errs.contains("discord.api_base_url"), "{errs}");
    assert!(
        !errs.contains("discord.guild_id"),
        "an integer id is fine: {errs}"
    );
    let missing = src.replace("guild_id = \"100000000000000001\"\n", "");
    let errs = parse(&missing, &[("CASEROOM_DISCORD_TOKEN", "t")])
        .unwrap_err()
        .to_string();
    assert!(errs.contains("discord.guild_id: is required"), "{errs}");
}

#[test]
fn slack_modes_need_their_secrets_and_a_known_mode() {
    let on = shipped().replace(
        "[slack]\n# Run the Slack adapter.",
        "[slack]\n# Run the Slack adapter.\n# (on for this test)",
    );
    let on = on.replacen(
        "enabled = false\n# How Slack reaches the bot",
        "enabled = true\n# How Slack reaches the bot",
        1,
    );
    assert!(
        on.contains("enabled = true\n# How Slack"),
        "the [slack] section as shipped"
    );
    // Socket mode (the default) needs the bot and app tokens.
    let cfg = parse(
        &on,
        &[
            ("CASEROOM_SLACK_BOT_TOKEN", "xoxb-1"),
            ("CASEROOM_SLACK_APP_TOKEN", "xapp-1"),
        ],
    )
    .expect("socket mode with both tokens");
    let s = cfg.slack.expect("slack enabled");
    assert_eq!(s.mode, caseroom::config::SlackMode::Socket);
    assert_eq!(s.app_token.unwrap().expose(), "xapp-1");
    assert!(s.signing_secret.is_none() && s.user_token.is_none());
    assert_eq!(s.api_base_url, "https://slack.com/api");
    assert_eq!(s.events_listen.to_string(), "127.0.0.1:3000");
    let err = one_error(&on, &[("CASEROOM_SLACK_BOT_TOKEN", "xoxb-1")]);
    assert!(
        err.contains("slack.app_token_env") && err.contains("CASEROOM_SLACK_APP_TOKEN"),
        "{err}"
    );

    // Events mode needs the signing secret instead.
    let events = on.replace("mode = \"socket\"", "mode = \"events\"");
    let err = one_error(&events, &[("CASEROOM_SLACK_BOT_TOKEN", "xoxb-1")]);
    assert!(err.contains("slack.signing_secret_env"), "{err}");
    let cfg = parse(
        &events,
        &[
            ("CASEROOM_SLACK_BOT_TOKEN", "xoxb-1"),
            ("CASEROOM_SLACK_SIGNING_SECRET", "sig"),
        ],
    )
    .unwrap();
    assert_eq!(cfg.slack.unwrap().mode, caseroom::config::SlackMode::Events);

    let bad = on.replace("mode = \"socket\"", "mode = \"rtm\"");
    let err = one_error(
        &bad,
        &[
            ("CASEROOM_SLACK_BOT_TOKEN", "xoxb-1"),
            ("CASEROOM_SLACK_APP_TOKEN", "xapp-1"),
        ],
    );
    let line = line_of(&bad, "mode = \"rtm\"");
    assert!(
        err.starts_with(&format!("cfg/test.toml:{line}: slack.mode")),
        "{err}"
    );
}

/// One process serves one chat platform: enabling two is refused with a
/// clear error before anything connects anywhere.
#[tokio::test]
async fn two_chat_platforms_at_once_are_refused() {
    let src = shipped()
        .replace(
            "[matrix]\n# Run the Matrix adapter.\nenabled = false",
            "[matrix]\n# Run the Matrix adapter.\nenabled = true",
        )
        .replace(
            "[discord]\n# Run the Discord adapter.\nenabled = false",
            "[discord]\n# Run the Discord adapter.\nenabled = true",
        )
        .replace("application_id = \"0\"", "application_id = \"900\"")
        .replace("guild_id = \"0\"", "guild_id = \"100\"");
    let mut cfg = parse(
        &src,
        &[
            ("CASEROOM_MATRIX_PASSWORD", "x"),
            ("CASEROOM_MATRIX_STORE_PASSPHRASE", "x"),
            ("CASEROOM_DISCORD_TOKEN", "x"),
        ],
    )
    .unwrap();
    assert!(cfg.matrix.is_some() && cfg.discord.is_some());
    let dir = tempfile::tempdir().unwrap();
    let store = caseroom::store::Store::open(dir.path()).unwrap();
    let err = match caseroom::platform::connect(&mut cfg, &store).await {
        Ok(_) => panic!("two platforms were accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("more than one chat platform is enabled (matrix, discord)"),
        "{err}"
    );
}

/// Encrypted rooms need the crypto store's passphrase; `encryption = false`
/// is the way to run without one.
#[test]
fn matrix_encryption_needs_a_store_passphrase() {
    let src = shipped().replace(
        "[matrix]\n# Run the Matrix adapter.\nenabled = false",
        "[matrix]\n# Run the Matrix adapter.\nenabled = true",
    );
    let without = src.replace(
        "store_passphrase_env = \"CASEROOM_MATRIX_STORE_PASSPHRASE\"\n",
        "",
    );
    let msg = one_error(&without, &[("CASEROOM_MATRIX_PASSWORD", "pw")]);
    assert!(
        msg.contains("matrix.store_passphrase_env") && msg.contains("encryption = false"),
        "{msg}"
    );
    let plain = without.replace("encryption = true", "encryption = false");
    let cfg = parse(&plain, &[("CASEROOM_MATRIX_PASSWORD", "pw")]).unwrap();
    assert!(cfg.matrix.unwrap().e2ee.is_none());
}
