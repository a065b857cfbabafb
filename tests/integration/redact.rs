//! Redaction of what people really type: a table of real-looking cases in
//! Chinese and English (what is masked and what stays readable), and
//! property tests that generate card numbers, CVVs, passwords and codes in
//! every form the rules promise to catch.

use caseroom::redact::redact;
use proptest::prelude::*;

/// What is masked and what is not. Each row: input, expected output.
const TABLE: &[(&str, &str)] = &[
    // Card numbers: digits, separators, full-width, line breaks.
    (
        "card 4111111111111111 declined",
        "card [card ****1111] declined",
    ),
    ("卡号4111 1111 1111 1111被拒", "卡号[card ****1111]被拒"),
    ("pan: 5500-0000-0000-0004.", "pan: [card ****0004]."),
    ("amex 3782 822463 10005 ok", "amex [card ****0005] ok"),
    ("银联6212 2612 0200 0000 019", "银联[card ****0019]"),
    (
        "我的卡是４１１１ １１１１ １１１１ １１１１",
        "我的卡是[card ****1111]",
    ),
    (
        "卡号：６２２２０２１２３４５６７８９０１２８",
        "卡号：[card ****0128]",
    ),
    (
        "it's 4111.1111.1111.1111 thanks",
        "it's [card ****1111] thanks",
    ),
    ("4111/1111/1111/1111", "[card ****1111]"),
    ("4111_1111_1111_1111", "[card ****1111]"),
    (
        "card:\n4111\n1111\n1111\n1111\nplease check",
        "card:\n[card ****1111]\nplease check",
    ),
    ("5555 - 5555 - 5555 - 4444", "[card ****4444]"),
    (
        "卡 4111－1111．1111／1111 付不了",
        "卡 [card ****1111] 付不了",
    ),
    (
        "visa 4111 1111-1111.1111, exp 12/27",
        "visa [card ****1111], exp 12/27",
    ),
    ("mastercard 2223000048400011", "mastercard [card ****0011]"),
    // Labelled card numbers are masked even when mistyped (not Luhn-valid).
    (
        "my card number is 4111 1111 1111 1112",
        "my card number is [card ****1112]",
    ),
    ("信用卡：6222021234567890123", "信用卡：[card ****0123]"),
    // CVV and its synonyms.
    ("CVV: 123", "CVV: [redacted]"),
    ("the cvc is 9876", "the cvc is [redacted]"),
    ("cvv2 321", "cvv2 [redacted]"),
    // Found by the CVV property test: no space between label and value.
    ("cvv123 please", "cvv[redacted] please"),
    ("security code 456", "security code [redacted]"),
    ("CID 1234 on the front", "CID [redacted] on the front"),
    (
        "the 3 digits on the back are 789",
        "the 3 digits on the back are [redacted]",
    ),
    ("安全码是321", "安全码是[redacted]"),
    ("校验码：852", "校验码：[redacted]"),
    ("卡背面三位数 456", "卡背面三位数 [redacted]"),
    ("ＣＶＶ：１２３", "CVV：[redacted]"),
    // Passwords and PINs.
    ("password: hunter2", "password: [redacted]"),
    ("my password is Abc#123", "my password is [redacted]"),
    ("PIN 1234", "PIN [redacted]"),
    ("pin code: 0000", "pin code: [redacted]"),
    ("密码是abc123", "密码是[redacted]"),
    ("登录密码：Qwe@2024，登不上", "登录密码：[redacted]，登不上"),
    ("支付密码 654321", "支付密码 [redacted]"),
    ("PIN码是 8642", "PIN码是 [redacted]"),
    ("密码是１２３４５６", "密码是[redacted]"),
    // One-time codes.
    ("验证码 123456", "验证码 [redacted]"),
    ("短信验证码是884422", "短信验证码是[redacted]"),
    ("OTP 123456", "OTP [redacted]"),
    ("the code is 123456", "the code is [redacted]"),
    ("verification code: 0042", "verification code: [redacted]"),
    // Readable: order ids, phone numbers, amounts, dates, error codes.
    (
        "订单号 2024031200012345 付款失败",
        "订单号 2024031200012345 付款失败",
    ),
    (
        "order 2024031222001412345678901234 stuck",
        "order 2024031222001412345678901234 stuck",
    ),
    (
        "订单号 4111111111111112，手机 13800138000",
        "订单号 4111111111111112，手机 13800138000",
    ),
    (
        "call me at +86 138 0013 8000",
        "call me at +86 138 0013 8000",
    ),
    ("手机 86 138 0013 8004", "手机 86 138 0013 8004"),
    ("电话 138-0013-8000", "电话 138-0013-8000"),
    (
        "charged ¥1,299.00 twice on 2024-03-12",
        "charged ¥1,299.00 twice on 2024-03-12",
    ),
    (
        "2026/03/12 14:05 扣款 350.00 元",
        "2026/03/12 14:05 扣款 350.00 元",
    ),
    (
        "payment failed with error code 1005",
        "payment failed with error code 1005",
    ),
    ("错误码 5001", "错误码 5001"),
    (
        "transaction TX20240312000123 on 12.03.2026",
        "transaction TX20240312000123 on 12.03.2026",
    ),
    // Talk about secrets is not a secret.
    (
        "I forgot my password and cannot log in",
        "I forgot my password and cannot log in",
    ),
    ("my password is wrong", "my password is wrong"),
    ("密码错误次数太多", "密码错误次数太多"),
    ("my PIN is locked", "my PIN is locked"),
    ("what is a CVV?", "what is a CVV?"),
];

#[test]
fn redaction_table() {
    let mut wrong = Vec::new();
    for (input, want) in TABLE {
        let got = redact(input);
        if got != *want {
            wrong.push(format!("{input:?}\n   got  {got:?}\n   want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn redaction_is_idempotent_on_the_table() {
    for (input, _) in TABLE {
        let once = redact(input).into_owned();
        assert_eq!(redact(&once), once, "{input}");
    }
}

fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
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
    sum % 10 == 0
}

/// A Luhn-valid card number: a scheme prefix, random digits, check digit.
fn pan() -> impl Strategy<Value = String> {
    let prefixes = prop::sample::select(vec![
        "4", "51", "52", "53", "54", "55", "2221", "2500", "2720", "34", "37", "35", "36", "6011",
        "62", "65", "9", "8",
    ]);
    (prefixes, 13usize..=19, any::<u64>())
        .prop_map(|(prefix, len, seed)| {
            let mut s = prefix.to_owned();
            let mut x = seed;
            while s.len() < len - 1 {
                s.push(char::from(b'0' + (x % 10) as u8));
                x = (x / 10) ^ x.rotate_left(17);
            }
            (0..10)
                .map(|d| format!("{s}{d}"))
                .find(|c| luhn_valid(c))
                .unwrap()
        })
        // `86 138…` with 13 digits is a Chinese mobile number, not a card.
        .prop_filter("not a phone number", |p| {
            !(p.len() == 13 && p.starts_with("861") && p.as_bytes()[3] >= b'3')
        })
}

/// Separators people put between digit groups, alone and mixed.
fn separator() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            " ", "-", ".", "/", "_", "\n", "\r\n", "\t", "\u{3000}", "－", "．", "／", "＿", "—",
        ]),
        1..=2,
    )
    .prop_map(|v| v.concat())
    .prop_filter("at most 3 characters", |s| s.chars().count() <= 3)
}

/// `pan` split into groups of 1..=6 digits, each digit ASCII or full-width.
fn written(pan: &str, sizes: &[usize], seps: &[String], wide: &[bool]) -> String {
    let mut out = String::new();
    let mut at = 0;
    let mut g = 0;
    while at < pan.len() {
        if at > 0 {
            out.push_str(&seps[g % seps.len()]);
        }
        let n = sizes[g % sizes.len()].min(pan.len() - at);
        for (k, b) in pan[at..at + n].bytes().enumerate() {
            if wide[(at + k) % wide.len()] {
                out.push(char::from_u32(0xFF10 + u32::from(b - b'0')).unwrap());
            } else {
                out.push(char::from(b));
            }
        }
        at += n;
        g += 1;
    }
    out
}

/// The ASCII digits of `s`, full-width ones included.
fn digits_of(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '０'..='９' => char::from_u32(c as u32 - 0xFEE0),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_luhn_valid_card_number_never_survives(
        pan in pan(),
        sizes in prop::collection::vec(1usize..=6, 1..5),
        seps in prop::collection::vec(separator(), 1..4),
        grouped in any::<bool>(),
        wide in prop::collection::vec(any::<bool>(), 1..20),
        prefix in "[a-zA-Z 付款卡号，:。失败]{0,12}",
        suffix in "[a-zA-Z 付款失败了。,!]{0,12}",
    ) {
        let shown = if grouped {
            written(&pan, &sizes, &seps, &wide)
        } else {
            written(&pan, &[19], &seps, &wide)
        };
        let text = format!("{prefix}{shown}{suffix}");
        let out = redact(&text);
        prop_assert!(!digits_of(&out).contains(&pan), "{:?} -> {:?}", text, out);
        let masked = format!("[card ****{}]", &pan[pan.len() - 4..]);
        prop_assert!(out.contains(&masked), "{:?} -> {:?}", text, out);
        prop_assert_eq!(redact(&out), out.clone(), "idempotent");
    }

    #[test]
    fn cvv_values_never_survive(
        label in prop::sample::select(vec![
            "CVV", "cvv2", "CVC", "cvc2", "CID", "security code", "card security code",
            "card verification value", "安全码", "校验码", "卡背面三位数", "CVV码",
        ]),
        sep in prop::sample::select(vec!["", " ", ": ", "：", " is ", "是", "=", " # "]),
        value in "[0-9]{3,4}",
        wide in any::<bool>(),
        prefix in "[a-zA-Z 我的，]{0,8}",
    ) {
        // "是" only reads naturally after a Chinese label, " is " after an English one.
        let chinese = !label.is_ascii();
        let odd = if chinese { sep == " is " } else { sep == "是" };
        prop_assume!(!odd);
        let shown = if wide { digits_wide(&value) } else { value.clone() };
        let text = format!("{prefix} {label}{sep}{shown} thanks");
        let out = redact(&text);
        prop_assert!(!digits_of(&out).contains(&value), "{:?} -> {:?}", text, out);
        prop_assert!(out.contains("[redacted]"), "{:?} -> {:?}", text, out);
    }

    #[test]
    fn passwords_pins_and_codes_never_survive(
        (label, value) in prop_oneof![
            (prop::sample::select(vec!["password:", "password is", "pwd", "passcode =", "密码是", "支付密码", "登录密码：", "PIN码"]),
             "[a-zA-Z][a-zA-Z0-9@#!]{5,11}"),
            (prop::sample::select(vec!["PIN", "pin code:", "PIN码是", "密码"]), "[0-9]{4,6}"),
            (prop::sample::select(vec!["验证码", "短信验证码是", "OTP", "verification code:", "the code is", "动态码"]), "[0-9]{4,8}"),
        ],
        prefix in "[a-z 请帮我看看，]{0,8}",
    ) {
        let sep = if label.ends_with(|c: char| c.is_ascii_alphabetic()) { " " } else { "" };
        let text = format!("{prefix} {label}{sep}{value} 谢谢");
        let out = redact(&text);
        prop_assert!(!out.contains(&value), "{:?} -> {:?}", text, out);
    }

    #[test]
    fn order_ids_phone_numbers_amounts_and_dates_stay_readable(
        date in (2020u32..2030, 1u32..=12, 1u32..=28, prop::sample::select(vec!["-", "/", "."])),
        amount in (1u32..100_000, 0u32..100),
        phone in "1[3-9][0-9]{9}",
        order in "20(2[0-9])(0[1-9]|1[0-2])[0-9]{8,10}",
        words in prop::sample::select(vec!["订单", "order", "金额", "amount", "手机", "phone"]),
    ) {
        let (y, m, d, s) = date;
        let text = format!(
            "{words} {order} 于 {y}{s}{m:02}{s}{d:02} 扣款 ¥{}.{:02}，联系 {phone}（+86 {phone}）",
            amount.0, amount.1
        );
        prop_assert_eq!(redact(&text), text.clone());
    }

    #[test]
    fn redaction_never_panics_and_keeps_text_without_digits(s in "\\PC{0,200}") {
        let out = redact(&s);
        if !s.chars().any(|c| c.is_ascii_digit() || ('０'..='９').contains(&c)) {
            prop_assert!(!out.contains("[card"), "{:?} -> {:?}", s, out);
        }
    }
}

fn digits_wide(s: &str) -> String {
    s.chars()
        .map(|c| char::from_u32(c as u32 - u32::from(b'0') + 0xFF10).unwrap())
        .collect()
}
