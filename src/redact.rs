//! Redaction of secrets in customer text.
//!
//! Customers paste card numbers, CVVs, passwords and one-time codes into
//! tickets, and agents paste them into notes. Nothing of that may reach a
//! chat room or the store in clear, so ticket bodies, customer replies,
//! chat messages, notes and outbound text go through [`redact`] before they
//! are posted, stored or fed to the playbook engine:
//!
//! - a card number becomes `[card ****1234]`, keeping only the last four
//!   digits. A card number is 13–19 digits, ASCII or full-width (`４１１１`),
//!   in groups split by spaces, dashes, dots, slashes, underscores or line
//!   breaks in any mixture (up to three separator characters between two
//!   groups), that passes the Luhn check and starts like a card scheme's
//!   number (2200–2204 and 2221–2720, 3–6, 8, 9; 1 only for 15 digits).
//!   Right after "card number" / "卡号" any 13–19 digits count, Luhn-valid
//!   or not (a mistyped card number is still a card number);
//! - CVV/CVC/CID/security code/安全码/校验码 values, passwords and PINs
//!   (`password: x`, `pwd x`, `PIN 1234`, `密码是x`, `PIN码 1234`) and
//!   one-time codes (`验证码 123456`, `OTP 123456`, `code is 123456`)
//!   become `[redacted]`, keeping the label so the agent sees what was
//!   there.
//!
//! Full-width digits and Latin letters are shown as their ASCII forms in
//! the result (only when the text has any), so one set of rules covers both.
//!
//! What stays readable: order numbers (a long order number is never cut into
//! a fake card, and date-based ones like `2024031200001234` start like no
//! card scheme), phone numbers (11 digits; `+86 138…` is not a card), amounts
//! and dates (too few digits). A Luhn-valid 13–19 digit number that starts
//! like a card is masked even when it was an order number: a leaked card
//! costs more than a hidden order id. The table test in
//! `tests/integration/redact.rs` lists what is and is not masked.
//!
//! Cost: card numbers are found by one pass over the characters; the label
//! rules are regexes (the `regex` crate, linear time on any input). Text
//! with nothing to redact is returned borrowed.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a redacted secret is replaced with.
const REDACTED: &str = "[redacted]";

/// Most separator characters allowed between two digit groups of a card
/// number (`" - "`, `"\r\n"`).
const MAX_SEPARATOR_RUN: usize = 3;

/// Labels after which any 13–19 digit number is treated as a card number,
/// Luhn-valid or not (a mistyped card number is still a card number).
static CARD_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:card\s*(?:number|no\.?|num|#)|卡号|卡號|银行卡|信用卡|借记卡|储蓄卡)\s*(?:is|是|为|:|：|=)?\s*$")
        .unwrap()
});

/// CVV-like values: the label is kept, the 3–4 digits are replaced.
static CVV: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (
          (?:
            (?-u:\b)(?:
                cvv2?|cvc2?|cvn2?|cid|csc
              | card\s+security\s+code | security\s+code
              | card\s+verification\s+(?:value|code|number)
              | (?:3|three)[\s\-]*digits?(?:\s+(?:code|number))?(?:\s+on\s+the\s+back)?
            )
            (?:\s*(?:code|number|no\.?))?
          |
            安全码|安全碼|校验码|卡验证码|验证值|cvv码|cvc码
            |卡背[面后]?的?(?:三|3)位数?字?|背面的?(?:三|3)位数?字?
          )
          \s*(?:is|are|was|是|为|為|=|:|：|\#|-)?\s*
        )
        ([0-9]{3,4})(?-u:\b)",
    )
    .unwrap()
});

/// English passwords: `password: x`, `password is x`, `pwd x`, `PIN 1234`.
static PASSWORD_EN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)((?-u:\b)(?:password|passwd|passcode|pwd|pin(?:\s*(?:code|number))?)(?-u:\b))(\s*(?:[:=：]|(?-u:\b)is(?-u:\b)|(?-u:\b)was(?-u:\b))\s*|\s+)([!-~]+)",
    )
    .unwrap()
});

/// Chinese passwords: `密码是x`, `密码：x`, `支付密码 123456`, `PIN码 1234`.
/// Only an ASCII value is taken, so `密码错误` or `密码是对的` stay as they
/// are.
static PASSWORD_ZH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(口令|密码|密碼|pin码|pin碼)(\s*(?:是|为|為|:|：|=)?\s*)([!-~]+)").unwrap()
});

/// One-time codes. The optional `error` group lets the replacer leave
/// `error code 1005` alone: error codes are useful and not secret.
static OTP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(error\s*|错误)?((?:验证码|驗證碼|校验码|动态码|短信码|动态密码|(?-u:\b)otp(?-u:\b)|one[\- ]time\s*(?:pass)?(?:code|password)|verification\s*code|security\s*code|(?-u:\b)code(?-u:\b))\s*(?:is|was|是|为|:|：|=)?\s*)([0-9]{4,8})(?-u:\b)",
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

/// [`redact`] applied to every string in a JSON value (keys stay as they
/// are): for raw payloads kept on disk. Returns whether anything changed.
pub fn redact_json(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => match redact(s) {
            Cow::Owned(clean) => {
                *s = clean;
                true
            }
            Cow::Borrowed(_) => false,
        },
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_json(v) | c),
        Value::Object(map) => map.values_mut().fold(false, |c, v| redact_json(v) | c),
        _ => false,
    }
}

/// Replaces card numbers, CVVs, passwords and one-time codes in `text`.
///
/// Returns the input unchanged (borrowed, no allocation) when there is
/// nothing to redact.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = ascii_width(text);
    out = then(out, redact_cards);
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
            || value.starts_with("[card")
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

/// Full-width digits and Latin letters (`４１１１`, `ＣＶＶ`) as ASCII, so
/// the rules see one form. Borrowed when there are none.
fn ascii_width(text: &str) -> Cow<'_, str> {
    let is_wide = |c: char| matches!(c, '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ');
    if !text.chars().any(is_wide) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_wide(c) {
                    char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// Runs `f` on `text`, keeping it borrowed when `f` changes nothing.
fn then<'a>(text: Cow<'a, str>, f: impl for<'b> Fn(&'b str) -> Cow<'b, str>) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(s) => f(s),
        Cow::Owned(s) => match f(&s) {
            Cow::Borrowed(_) => Cow::Owned(s),
            Cow::Owned(o) => Cow::Owned(o),
        },
    }
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

/// Characters that may split the digit groups of a card number.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '/'
            | '_'
            | '\n'
            | '\r'
            | '\t'
            | '\u{a0}'   // no-break space
            | '\u{3000}' // ideographic space
            | '\u{2010}'
            ..='\u{2015}' // hyphens and dashes
            | '\u{2212}' // minus sign
            | '－'
            | '．'
            | '／'
            | '＿'
            | '・'
            | '·'
    )
}

/// Replaces every card number in `text` with `[card ****1234]`.
fn redact_cards(text: &str) -> Cow<'_, str> {
    // Most text has too few digits to hold a card number at all.
    if text.bytes().filter(u8::is_ascii_digit).count() < 13 {
        return Cow::Borrowed(text);
    }
    let mut out: Option<String> = None;
    let mut last = 0;
    let mut run = Run::default();
    let flush = |run: &mut Run, out: &mut Option<String>, last: &mut usize| {
        for (start, end, last4) in run.cards(text) {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            buf.push_str(&text[*last..start]);
            buf.push_str("[card ****");
            buf.push_str(&last4);
            buf.push(']');
            *last = end;
        }
        run.clear();
    };
    for (i, c) in text.char_indices() {
        if c.is_ascii_digit() {
            match run.groups.last_mut() {
                Some(g) if g.1 == i => g.1 = i + 1,
                Some(_) if run.separators <= MAX_SEPARATOR_RUN => {
                    run.groups.push((i, i + 1));
                }
                Some(_) => {
                    flush(&mut run, &mut out, &mut last);
                    run.groups.push((i, i + 1));
                }
                None => run.groups.push((i, i + 1)),
            }
            run.separators = 0;
        } else if is_separator(c) && !run.groups.is_empty() {
            run.separators += 1;
            if run.separators > MAX_SEPARATOR_RUN {
                flush(&mut run, &mut out, &mut last);
            }
        } else if !run.groups.is_empty() {
            flush(&mut run, &mut out, &mut last);
        }
    }
    flush(&mut run, &mut out, &mut last);
    match out {
        None => Cow::Borrowed(text),
        Some(mut buf) => {
            buf.push_str(&text[last..]);
            Cow::Owned(buf)
        }
    }
}

/// A run of digit groups joined by short separator runs.
#[derive(Default)]
struct Run {
    /// Byte ranges of the digit groups.
    groups: Vec<(usize, usize)>,
    /// Separator characters since the last digit.
    separators: usize,
}

impl Run {
    fn clear(&mut self) {
        self.groups.clear();
        self.separators = 0;
    }

    /// The card numbers in this run: byte ranges in `text` and last four
    /// digits. Windows are made of whole groups, so a long order number is
    /// never cut into a fake card; from each group, the longest window that
    /// is a card wins.
    fn cards(&self, text: &str) -> Vec<(usize, usize, String)> {
        let groups = &self.groups;
        let total: usize = groups.iter().map(|(s, e)| e - s).sum();
        if total < 13 {
            return Vec::new();
        }
        let Some(&(run_start, _)) = groups.first() else {
            return Vec::new();
        };
        let before = &text[..run_start];
        let mut from = run_start.saturating_sub(48);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        let labelled = CARD_LABEL.is_match(&text[from..run_start]);
        // `+86 138 0013 8000` is a phone number with its country code.
        let phone = before
            .trim_end_matches([' ', '\u{a0}'])
            .ends_with(['+', '＋']);
        let mut found = Vec::new();
        let mut digits = String::with_capacity(20);
        let mut i = 0;
        while i < groups.len() {
            let mut best = None;
            digits.clear();
            for (j, &(s, e)) in groups.iter().enumerate().skip(i) {
                digits.push_str(&text[s..e]);
                if digits.len() > 19 {
                    break;
                }
                if digits.len() < 13 {
                    continue;
                }
                let card = if i == 0 && labelled {
                    true
                } else {
                    !(i == 0 && phone) && looks_like_card(&digits)
                };
                if card {
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
}

/// 13–19 ASCII digits that start like a card scheme's number and pass Luhn.
fn looks_like_card(digits: &str) -> bool {
    let b = digits.as_bytes();
    if !(13..=19).contains(&b.len()) {
        return false;
    }
    let scheme = match b[0] {
        b'3' | b'4' | b'5' | b'6' | b'8' | b'9' => true,
        // Mir 2200–2204, Mastercard 2221–2720; not 2024… order numbers.
        b'2' => {
            let p: u32 = digits[..4].parse().unwrap_or(0);
            (2200..=2204).contains(&p) || (2221..=2720).contains(&p)
        }
        // UATP: 15 digits.
        b'1' => b.len() == 15,
        _ => false,
    };
    // `86 138 0013 8000`: a Chinese mobile number with its country code.
    let phone = b.len() == 13 && digits.starts_with("861") && (b'3'..=b'9').contains(&b[3]);
    scheme && !phone && luhn_valid(digits)
}

/// The Luhn checksum used by every card scheme.
pub(crate) fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
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
            // A card scheme's first digit (see `looks_like_card`).
            body in "[3-6][0-9]{11,17}",
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
