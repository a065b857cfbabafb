//! Tests of the playbook module as a whole: `check` errors, the engine,
//! rendering, the JSON Lines interface and hot reload. Each test builds a
//! small playbook directory in a tempdir.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::lang::Lang;

use super::*;

const REFUND: &str = r#"
id = "refund"
priority = "p3"
tags = ["payments"]
description = "Refund status"
phrases = ["退款", "refund"]

[title]
zh = "退款"
en = "Refund"

[[triggers]]
pattern = '(退款|退钱).{0,6}(没|未)(到|收到)'
weight = 2.0

[[triggers]]
pattern = 'refund.{0,20}(not|never)\s+(arrived|received)'
weight = 2.0

[examples]
zh = ["退款还没到账", "商家说已经退款了我没收到", "申请退款好几天了", "退货了钱什么时候退回来"]
en = ["where is my refund", "the merchant refunded me but I never got it", "how long does a refund take", "I returned the item, when do I get my money back"]

[[fields]]
name = "merchant"
pattern = '(?:商家|merchant)\s*[:：]?\s*(?P<value>\w+)'
description = "Merchant name"

[checklist]
zh = ["查退款状态"]
en = ["Check the refund status"]

[reply]
zh = """
{% if customer_name %}{{ customer_name }}，{% endif %}您好！您{% if amount %}{{ amount }}{{ currency }}的{% endif %}退款正在处理{% if merchant %}（商家：{{ merchant }}）{% endif %}。
"""
en = """
Hi {{ customer_name | default("there") }}, your refund{% if amount %} of {{ currency }} {{ amount }}{% endif %} is on its way.
"""
"#;

const LOCKED: &str = r#"
id = "account-locked"
priority = "p2"
tags = []
description = "Account locked"
phrases = ["账户被冻结", "account locked"]

[title]
zh = "账户锁定"
en = "Account locked"

[[triggers]]
pattern = '(账户|账号).{0,4}(冻结|锁定|锁了)'
weight = 2.0

[examples]
zh = ["账号被锁了登不上", "账户被冻结了怎么办", "密码输错太多次账号锁定了", "登录不了说账户异常已冻结"]
en = ["my account is locked", "I can't log in, account frozen", "too many wrong passwords and now I'm locked out", "why was my account suspended"]

[checklist]
zh = ["核实身份"]
en = ["Verify identity"]

[reply]
zh = "您好，您的账户已锁定。"
en = "Hello, your account is locked."
"#;

const OUT_OF_SCOPE: &str = r#"
id = "none"
description = "Nothing we have a playbook for"

[examples]
zh = ["你们公司在哪里", "怎么开发票", "可以合作吗", "你们招人吗", "app的夜间模式在哪里开"]
en = ["where is your office", "do you have a job opening", "can I get an invoice", "how do I turn on dark mode", "what is your company address"]
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn good_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "refund.toml", REFUND);
    write(dir.path(), "account-locked.toml", LOCKED);
    write(dir.path(), "out-of-scope.toml", OUT_OF_SCOPE);
    dir
}

fn engine() -> Engine {
    let dir = good_dir();
    let set = load_dir(dir.path()).unwrap();
    Engine::build(Arc::new(set), &[], &SuggestOptions::default())
}

/// Loads a directory holding `refund.toml` with `edit` applied and returns
/// the error lines.
fn errors_for(name: &str, text: &str) -> Vec<String> {
    let dir = good_dir();
    write(dir.path(), name, text);
    match load_dir(dir.path()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

fn assert_error(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no `{needle}` in {errors:#?}"
    );
}

#[test]
fn loads_a_good_directory() {
    let dir = good_dir();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.ids().collect::<Vec<_>>(), ["account-locked", "refund"]);
    let refund = set.get("refund").unwrap();
    assert_eq!(refund.title(Lang::En), "Refund");
    assert_eq!(refund.checklist(Lang::Zh), ["查退款状态"]);
    assert_eq!(refund.priority(), crate::case::Priority::P3);
    assert_eq!(set.out_of_scope_examples(Lang::En).len(), 5);
}

#[test]
fn check_reports_bad_toml_with_line() {
    let errors = errors_for("refund.toml", "id = \"refund\"\npriority = \n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("refund.toml:2: invalid TOML"),
        "{errors:?}"
    );
}

#[test]
fn check_reports_unknown_keys() {
    let text = REFUND
        .replace(
            "tags = [\"payments\"]",
            "tags = [\"payments\"]\ncolour = \"red\"",
        )
        .replace(
            "weight = 2.0\n\n[[triggers]]",
            "wieght = 2.0\n\n[[triggers]]",
        );
    let errors = errors_for("refund.toml", &text);
    assert_error(&errors, "refund.toml:5: colour: unknown key");
    assert_error(&errors, "triggers[].wieght: unknown key");
}

#[test]
fn check_reports_duplicate_ids_and_file_name_mismatch() {
    let errors = errors_for("refund2.toml", REFUND);
    assert_error(
        &errors,
        "refund2.toml:2: id: id `refund` does not match the file name",
    );
    // Same id twice (one file misnamed): reported as a duplicate too.
    assert_error(&errors, "duplicate id `refund`");
}

#[test]
fn check_reports_bad_regex_with_its_line() {
    let text = REFUND.replace("(退款|退钱).{0,6}(没|未)(到|收到)", "(退款|退钱");
    let errors = errors_for("refund.toml", &text);
    assert_error(
        &errors,
        "refund.toml:13: triggers[0].pattern: regex parse error: unclosed group",
    );
}

#[test]
fn check_reports_field_without_value_group() {
    let text = REFUND.replace("(?P<value>\\w+)", "(\\w+)");
    let errors = errors_for("refund.toml", &text);
    assert_error(&errors, "fields[0].pattern: needs a named group `value`");
}

#[test]
fn check_reports_unknown_template_variable() {
    let text = REFUND.replace("{{ merchant }}", "{{ merchnat }}");
    let errors = errors_for("refund.toml", &text);
    // The zh reply starts on line 35; the variable is on its first line.
    assert_error(
        &errors,
        "refund.toml:35: reply.zh: template uses unknown variable `merchnat`",
    );
}

#[test]
fn check_reports_template_syntax_errors() {
    let text = REFUND.replace("is on its way.", "is on its way. {% if amount %}");
    let errors = errors_for("refund.toml", &text);
    assert_error(&errors, "reply.en: template syntax error");
}

#[test]
fn check_reports_missing_languages() {
    let text = REFUND
        .replace("en = \"Refund\"\n", "")
        .replace("en = [\"Check the refund status\"]\n", "");
    let errors = errors_for("refund.toml", &text);
    assert_error(&errors, "title.en: missing language");
    assert_error(&errors, "checklist.en: missing language");
}

#[test]
fn check_reports_every_error_of_every_file() {
    let dir = good_dir();
    write(
        dir.path(),
        "refund.toml",
        &REFUND
            .replace("(?P<value>\\w+)", "(\\w+)")
            .replace("p3", "p9"),
    );
    write(
        dir.path(),
        "account-locked.toml",
        &LOCKED.replace("(账户|账号)", "(账户|账号"),
    );
    let errors = load_dir(dir.path()).unwrap_err();
    let files: Vec<_> = errors
        .iter()
        .map(|e| e.file.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(files.contains(&"account-locked.toml".into()) && files.contains(&"refund.toml".into()));
}

#[test]
fn suggests_and_abstains() {
    let e = engine();
    let s = e.suggest("我申请的退款还没到账，商家：小米");
    assert_eq!(s.playbook.as_deref(), Some("refund"), "{s:?}");
    assert_eq!(s.lang, Lang::Zh);
    assert_eq!(s.fields.get("merchant").map(String::as_str), Some("小米"));
    assert!(s.why.iter().any(|w| w.contains("退款")), "{:?}", s.why);
    let s = e.suggest("My account is locked, I can't log in");
    assert_eq!(s.playbook.as_deref(), Some("account-locked"), "{s:?}");
    assert_eq!(s.lang, Lang::En);
    let s = e.suggest("你们公司地址在哪里");
    assert_eq!(s.playbook, None, "{s:?}");
    assert_eq!(s.ranked.len(), 2);
    assert!(s.ranked.iter().all(|r| (0.0..=1.0).contains(&r.confidence)));
}

#[test]
fn suggestion_never_holds_a_card_number() {
    let s = engine().suggest("refund to card 4111 1111 1111 1111 not received, 尾号 1111");
    let all = format!("{:?}", s);
    assert!(
        !all.contains("4111 1111") && !all.contains("4111111111111111"),
        "{all}"
    );
    assert_eq!(s.fields.get("card_last4").map(String::as_str), Some("1111"));
}

#[test]
fn renders_replies_in_both_languages() {
    let e = engine();
    let mut fields = BTreeMap::new();
    fields.insert("amount".to_string(), "50".to_string());
    fields.insert("currency".to_string(), "USD".to_string());
    fields.insert("merchant".to_string(), "Acme".to_string());
    let zh = e
        .render_reply("refund", Lang::Zh, &fields, Some("李雷"))
        .unwrap();
    assert_eq!(zh, "李雷，您好！您50USD的退款正在处理（商家：Acme）。");
    let en = e.render_reply("refund", Lang::En, &fields, None).unwrap();
    assert_eq!(en, "Hi there, your refund of USD 50 is on its way.");
    let en = e
        .render_reply("refund", Lang::En, &BTreeMap::new(), Some("Ann"))
        .unwrap();
    assert_eq!(en, "Hi Ann, your refund is on its way.");
    assert!(matches!(
        e.render_reply("nope", Lang::En, &fields, None),
        Err(RenderError::UnknownPlaybook(_))
    ));
}

#[test]
fn history_errors_name_the_line() {
    let dir = good_dir();
    let set = load_dir(dir.path()).unwrap();
    let input = "{\"text\": \"where is my refund\", \"label\": \"refund\"}\n\
                 \n\
                 not json\n\
                 {\"text\": \"x\", \"label\": \"refunds\"}\n\
                 {\"label\": \"none\"}\n";
    let errors = parse_history(input.as_bytes(), &set).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("line 3: not JSON"), "{errors:?}");
    assert!(
        errors[1]
            .starts_with("line 4: unknown label `refunds` (known: none, account-locked, refund)")
    );
    assert!(errors[2].starts_with("line 5: missing or empty \"text\""));
    let ok = parse_history(
        "{\"text\":\"a\",\"label\":\"none\",\"lang\":\"en\"}\n".as_bytes(),
        &set,
    );
    assert_eq!(ok.unwrap().len(), 1);
}

#[test]
fn jsonl_answers_every_line_in_order() {
    let e = engine();
    let input = "{\"text\": \"退款还没到账\", \"id\": 1}\n\
                 {\"txt\": \"oops\"}\n\
                 \n\
                 {\"text\": 5}\n\
                 {\"text\": \"where is your office\"}\n";
    let mut out = Vec::new();
    let failed = suggest_jsonl(&e, input.as_bytes(), &mut out).unwrap();
    assert_eq!(failed, 3);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["playbook"], "refund");
    assert_eq!(lines[0]["lang"], "zh");
    assert!(lines[0]["ranked"].as_array().unwrap().len() <= 3);
    assert!(lines[0]["fields"].is_object());
    assert!(lines[1]["error"].as_str().unwrap().starts_with("line 2:"));
    assert!(lines[2]["error"].as_str().unwrap().starts_with("line 3:"));
    assert!(lines[3]["error"].as_str().unwrap().starts_with("line 4:"));
    assert!(lines[4]["playbook"].is_null());
    assert_eq!(lines[4]["ranked"].as_array().unwrap().len(), 2);
}

#[test]
fn human_output_has_title_checklist_and_reply() {
    let out = format_suggestion(&engine(), "退款还没到账，50美元");
    assert!(out.contains("playbook: refund (退款)"), "{out}");
    assert!(out.contains("查退款状态"), "{out}");
    assert!(out.contains("您好！您50USD的退款正在处理"), "{out}");
}

#[test]
fn detects_language() {
    assert_eq!(detect_lang("我的card被decline了"), Lang::Zh);
    assert_eq!(
        detect_lang("My transfer to 杭州 failed yesterday"),
        Lang::En
    );
    assert_eq!(detect_lang("refund please"), Lang::En);
    assert_eq!(detect_lang("退款"), Lang::Zh);
    assert_eq!(detect_lang("Topay转账失败了"), Lang::Zh);
    assert_eq!(
        detect_lang("Why is my account suspended? Rent is due tomorrow. 订单号 TP2024000005"),
        Lang::En
    );
    assert_eq!(detect_lang("12345"), Lang::Zh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_and_keeps_the_old_set_on_a_bad_edit() {
    use std::time::Duration;
    let dir = good_dir();
    let set = load_dir(dir.path()).unwrap();
    let shared = share(Engine::build(
        Arc::new(set),
        &[],
        &SuggestOptions::default(),
    ));
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = spawn_watcher_every(
        dir.path().to_path_buf(),
        shared.clone(),
        Duration::from_millis(20),
        cancel.clone(),
    );
    let wait_for = |want: usize| {
        let shared = shared.clone();
        async move {
            for _ in 0..200 {
                if current(&shared).playbooks().len() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    // A broken edit: the old set stays.
    write(dir.path(), "broken.toml", "id = ");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(current(&shared).playbooks().len(), 2);
    // Fixed: a third playbook appears.
    write(
        dir.path(),
        "broken.toml",
        &LOCKED.replace("account-locked", "broken"),
    );
    assert!(wait_for(3).await, "reload did not happen");
    cancel.cancel();
    task.await.unwrap();
}
