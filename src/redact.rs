//! Redaction of secrets in customer text.
//!
//! Customers paste card numbers, CVVs, passwords and one-time codes into
//! tickets. Nothing of that may reach a chat room or the store in clear, so
//! every ticket goes through [`redact`] before it is posted, stored or fed to
//! the playbook engine:
//!
//! - a card number (13–19 digits, optionally grouped with spaces or dashes,
//!   passing the Luhn check, or any 13–19 digits right after "card number" /
//!   "卡号") becomes `[card ****1234]`, keeping only the last four digits;
//! - CVV/CVC/安全码 values, passwords (`password: x`, `pwd x`, `密码是x`) and
//!   one-time codes (`验证码 123456`, `OTP 123456`, `code is 123456`) become
//!   `[redacted]`, keeping the label so the agent still sees what was there.
//!
//! Everything is regex based (the `regex` crate, so linear time on any input)
//! and errs on the side of redacting too much: a harmless word after
//! "password is" is a smaller loss than a leaked secret.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a redacted secret is replaced with.
const REDACTED: &str = "[redacted]";

/// Runs of digit groups, e.g. `4111 1111-1111 1111` or `6222021234567890123`.
/// Candidate card numbers are windows of whole groups inside such a run.
static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]+(?:[ \-][0-9]+)*").unwrap());

/// Labels after which any 13–19 digit number is treated as a card number,
/// Luhn-valid or not (a mistyped card number is still a card number).
static CARD_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:card\s*(?:number|no\.?|num|#)|卡号|银行卡|信用卡|借记卡)\s*(?:is|是|为|:|：|=)?\s*$")
        .unwrap()
});

/// CVV-like values: the label is kept, the 3–4 digits are replaced.
static CVV: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)((?-u:\b)(?:cvv2?|cvc2?|cvn2?|csc|card security code)(?-u:\b)(?:\s*(?:code|number))?\s*(?:is|was|=|:|：|#)?\s*|(?:安全码|卡背后?的?三位数?|背面的?三位数?|cvv码)\s*(?:是|为|:|：|=)?\s*)([0-9]{3,4})(?-u:\b)",
    )
    .unwrap()
});

/// English passwords: `password: x`, `password is x`, `pwd x`, `PIN 1234`.
static PASSWORD_EN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)((?-u:\b)(?:password|passwd|passcode|pwd|pin(?:\s*code)?)(?-u:\b))(\s*(?:[:=：]|(?-u:\b)is(?-u:\b)|(?-u:\b)was(?-u:\b))\s*|\s+)([!-~]+)",
    )
    .unwrap()
});

/// Chinese passwords: `密码是x`, `密码：x`, `支付密码 123456`. Only an ASCII
/// value is taken, so `密码错误` or `密码是对的` stay as they are.
static PASSWORD_ZH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(口令|密码)(\s*(?:是|为|:|：|=)?\s*)([!-~]+)").unwrap());

/// One-time codes. The optional `error` group lets the replacer leave
/// `error code 1005` alone: error codes are useful and not secret.
static OTP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(error\s*|错误)?((?:验证码|校验码|动态码|短信码|动态密码|(?-u:\b)otp(?-u:\b)|one[\- ]time\s*(?:pass)?(?:code|password)|verification\s*code|security\s*code|(?-u:\b)code(?-u:\b))\s*(?:is|was|是|为|:|：|=)?\s*)([0-9]{4,8})(?-u:\b)",
    )
    .unwrap()
});

/// Words that commonly follow "password is" without being a password.
const NOT_A_PASSWORD: &[&str] = &[
    "a",
    "an",
    "and",
    "being",
    "correct",
    "definitely",
    "expired",
    "fine",
    "incorrect",
    "invalid",
    "locked",
    "not",
    "now",
    "ok",
    "right",
    "still",
    "the",
    "too",
    "wrong",
    "reset",
    "changed",
    "for",
    "to",
    "of",
    "in",
    "on",
    "at",
    "my",
    "your",
    "was",
    "is",
    "has",
    "have",
    "and,",
    "but",
    "or",
    "reset.",
    "wrong.",
    "incorrect.",
    "expired.",
    "not.",
    "i",
    "it",
];

/// Replaces card numbers, CVVs, passwords and one-time codes in `text`.
///
/// Returns the input unchanged (borrowed, no allocation) when there is
/// nothing to redact.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = redact_cards(text);
    out = apply(out, &CVV, |c| format!("{}{REDACTED}", &c[1]));
    out = apply(out, &OTP, |c| {
        if c.get(1).is_some() {
            c[0].to_string()
        } else {
            format!("{}{REDACTED}", &c[2])
        }
    });
    out = apply(out, &PASSWORD_EN, |c| {
        let value = &c[3];
        let is_plain_space = c[2].trim().is_empty();
        let label = c[1].to_ascii_lowercase();
        let word_label = label.starts_with("password") || label.starts_with("pass");
        if value == REDACTED
            || value.starts_with("[redacted")
            || NOT_A_PASSWORD.contains(&value.to_ascii_lowercase().as_str())
            // "password reset", "password for" ...: without a separator, only
            // `pwd`/`PIN` are followed directly by the secret.
            || (is_plain_space && word_label)
            // "PIN locked", "pin code sent": a PIN is digits.
            || (label.starts_with("pin") && !value.chars().all(|c| c.is_ascii_digit()))
        {
            c[0].to_string()
        } else {
            format!("{}{}{REDACTED}", &c[1], &c[2])
        }
    });
    out = apply(out, &PASSWORD_ZH, |c| {
        if c[3].starts_with("[redacted") || c[3].starts_with("[card") {
            c[0].to_string()
        } else {
            format!("{}{}{REDACTED}", &c[1], &c[2])
        }
    });
    out
}

/// Runs `re` over `text`, keeping it borrowed when nothing matches.
fn apply<'a>(text: Cow<'a, str>, re: &Regex, f: impl Fn(&Captures<'_>) -> String) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(s) => re.replace_all(s, |c: &Captures<'_>| f(c)),
        Cow::Owned(s) => match re.replace_all(&s, |c: &Captures<'_>| f(c)) {
            Cow::Borrowed(_) => Cow::Owned(s),
            Cow::Owned(o) => Cow::Owned(o),
        },
    }
}

/// Replaces every card number in `text` with `[card ****1234]`.
fn redact_cards(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut last = 0;
    for run in DIGIT_RUN.find_iter(text) {
        if run.as_str().len() < 13 {
            continue;
        }
        let mut from = run.start().saturating_sub(48);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let labelled = CARD_LABEL.is_match(&text[from..run.start()]);
        for (start, end, last4) in card_spans(run.as_str(), labelled) {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            buf.push_str(&text[last..run.start() + start]);
            buf.push_str("[card ****");
            buf.push_str(&last4);
            buf.push(']');
            last = run.start() + end;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[last..]);
            Cow::Owned(buf)
        }
    }
}

/// Card numbers inside one run of digit groups: byte ranges (relative to the
/// run) and the last four digits. Windows are made of whole groups, so a
/// long order number is never cut into a fake card.
fn card_spans(run: &str, labelled: bool) -> Vec<(usize, usize, String)> {
    // (start, end) byte offsets of each digit group.
    let mut groups = Vec::new();
    let mut start = None;
    for (i, b) in run.bytes().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                groups.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        groups.push((s, run.len()));
    }
    let mut found = Vec::new();
    let mut i = 0;
    while i < groups.len() {
        // Longest window of whole groups starting at group i that is a card.
        let mut best = None;
        let mut digits = String::new();
        for (j, &(s, e)) in groups.iter().enumerate().skip(i) {
            digits.push_str(&run[s..e]);
            if digits.len() > 19 {
                break;
            }
            if digits.len() >= 13 && ((labelled && i == 0) || luhn_valid(&digits)) {
                best = Some((j, digits[digits.len() - 4..].to_string()));
            }
        }
        match best {
            Some((j, last4)) => {
                found.push((groups[i].0, groups[j].1, last4));
                i = j + 1;
            }
            None => i += 1,
        }
    }
    found
}

/// The Luhn checksum used by every card scheme.
pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leaves_clean_text_borrowed() {
        let text = "我的订单 20240312 付款失败了，金额 ¥1,299.00";
        assert!(matches!(redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn masks_card_numbers_in_all_formats() {
        for (text, want) in [
            (
                "card 4111111111111111 declined",
                "card [card ****1111] declined",
            ),
            ("卡号4111 1111 1111 1111被拒", "卡号[card ****1111]被拒"),
            ("pan: 5500-0000-0000-0004.", "pan: [card ****0004]."),
            ("amex 378282246310005 ok", "amex [card ****0005] ok"),
            ("银联6212 2612 0200 0000 019", "银联[card ****0019]"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }

    #[test]
    fn keeps_numbers_that_are_not_cards() {
        // Luhn-invalid and not labelled as a card: an order number.
        let text = "订单号 4111111111111112，手机 13800138000";
        assert_eq!(redact(text), text);
        // A long order number is not cut into a fake card.
        let long = "order 2024031222001412345678901234 stuck";
        assert_eq!(redact(long), long);
    }

    #[test]
    fn masks_labelled_card_numbers_even_with_a_typo() {
        assert_eq!(
            redact("my card number is 4111 1111 1111 1112"),
            "my card number is [card ****1112]"
        );
        assert_eq!(redact("卡号：6222021234567890128"), "卡号：[card ****0128]");
    }

    #[test]
    fn separates_a_phone_number_from_a_card() {
        assert_eq!(
            redact("13800138000 4111111111111111"),
            "13800138000 [card ****1111]"
        );
    }

    #[test]
    fn masks_cvv() {
        assert_eq!(redact("CVV: 123"), "CVV: [redacted]");
        assert_eq!(redact("the cvc is 9876"), "the cvc is [redacted]");
        assert_eq!(redact("安全码是321"), "安全码是[redacted]");
        assert_eq!(redact("卡背后三位数 456"), "卡背后三位数 [redacted]");
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(redact("password: hunter2"), "password: [redacted]");
        assert_eq!(
            redact("my password is Abc#123"),
            "my password is [redacted]"
        );
        assert_eq!(redact("pwd s3cret!"), "pwd [redacted]");
        assert_eq!(redact("密码是abc123"), "密码是[redacted]");
        assert_eq!(
            redact("登录密码：Qwe@2024，登不上"),
            "登录密码：[redacted]，登不上"
        );
        assert_eq!(redact("支付密码 654321"), "支付密码 [redacted]");
    }

    #[test]
    fn keeps_talk_about_passwords() {
        for text in [
            "I forgot my password and cannot log in",
            "my password is wrong",
            "password reset does not work",
            "密码错误次数太多",
            "密码是对的但是登不上",
            "my PIN is locked",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn masks_one_time_codes() {
        assert_eq!(redact("验证码 123456"), "验证码 [redacted]");
        assert_eq!(redact("收到的验证码是884422"), "收到的验证码是[redacted]");
        assert_eq!(redact("OTP 123456"), "OTP [redacted]");
        assert_eq!(redact("the code is 123456"), "the code is [redacted]");
        assert_eq!(
            redact("verification code: 0042"),
            "verification code: [redacted]"
        );
    }

    #[test]
    fn keeps_error_codes() {
        let text = "payment failed with error code 1005";
        assert_eq!(redact(text), text);
        assert_eq!(redact("错误码 5001"), "错误码 5001");
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("4111111111111112"));
    }

    /// Appends the Luhn check digit to `body`.
    fn with_check_digit(body: &str) -> String {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|s| luhn_valid(s))
            .unwrap()
    }

    proptest! {
        #[test]
        fn a_luhn_valid_pan_never_survives(
            body in "[1-9][0-9]{11,17}",
            sep in prop::sample::select(vec!["", " ", "-"]),
            group in 4usize..=6,
            prefix in "[a-zA-Z 付款卡号，:]{0,12}",
            suffix in "[a-zA-Z 失败了。,]{0,12}",
        ) {
            let pan = with_check_digit(&body);
            let grouped: Vec<String> = pan
                .as_bytes()
                .chunks(group)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            let shown = grouped.join(sep);
            let text = format!("{prefix}{shown}{suffix}");
            let out = redact(&text);
            let digits: String = out.chars().filter(char::is_ascii_digit).collect();
            prop_assert!(!digits.contains(&pan), "{text} -> {out}");
            let last4 = &pan[pan.len() - 4..];
            let masked = format!("[card ****{last4}]");
            prop_assert!(out.contains(&masked), "{} -> {}", text, out);
        }
    }
}
