//! Pulling template fields out of ticket text.
//!
//! The built-in extractors fill the variables every reply template may use:
//! `amount`, `currency`, `transaction_id`, `email`, `card_last4`, `country`
//! and `date`. A playbook adds its own `[[fields]]` (a regex with a `value`
//! group). Extraction always runs on *redacted* text, so a full card number
//! can never end up in a field: the last four digits are read back from the
//! `[card ****1234]` mask.
//!
//! Every regex here uses ASCII word boundaries (`(?-u:\b)`): Unicode
//! boundaries would push the regex engine off its fast path on Chinese text.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::load::Playbook;

/// `¥1,299.00`, `US$30`, `50 USD`, `1.2万`, `1,299元`, `300块`, `EUR 20`.
static AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?xi)
        (?P<sym>US\$|HK\$|S\$|A\$|C\$|NT\$|RMB|CNY|USD|EUR|HKD|JPY|GBP|SGD|AUD|CAD|[$¥￥€£₩₹])
            \s*(?P<n1>[0-9][0-9,]*(?:\.[0-9]+)?)(?:\s*(?P<m1>万|千|(?:k|w)(?-u:\b)))?
        | (?P<n2>[0-9][0-9,]*(?:\.[0-9]+)?)\s*(?P<m2>万|千|k|w)?\s*
            (?P<unit>元|块钱|块|人民币|美元|美金|欧元|港币|港元|日元|日币|英镑|韩元|新加坡元|新币|澳元|加元|泰铢|台币
              |(?:rmb|cny|usd|eur|hkd|jpy|gbp|sgd|aud|cad|thb|krw|dollars?|bucks|euros?|pounds?|yuan|yen)(?-u:\b))
        | (?P<n3>[0-9]+(?:\.[0-9]+)?)\s*(?P<m3>万)",
    )
    .unwrap()
});

/// A currency named anywhere (when the amount itself carries none).
static CURRENCY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)人民币|美元|美金|欧元|港币|港元|日元|日币|英镑|韩元|新加坡元|新币|澳元|加元|泰铢|台币|US\$|HK\$|[€£¥￥]|(?-u:\b)(?:rmb|cny|usd|eur|hkd|jpy|gbp|sgd|aud|cad|thb|krw|dollars?|euros?|pounds? sterling|yuan|yen)(?-u:\b)",
    )
    .unwrap()
});

/// `订单号：2024…`, `transaction id TX123456`, `order #A-99812`.
static TXN_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:订单号|订单编号|订单|交易号|交易单号|交易编号|交易流水号|流水号|单号|商户单号|参考号|凭证号|(?-u:\b)(?:transaction|txn|trx|order|payment|reference|ref)(?-u:\b)(?:\s*(?:id|no\.?|number|#|ref(?:erence)?))?)\s*(?:is|是|为|:|：|#|=)?\s*(?P<value>[A-Za-z0-9][A-Za-z0-9\-_]{5,39})",
    )
    .unwrap()
});

/// A bare id-looking token: `TP2024031200123` or a long digit string.
static TXN_BARE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(?P<value>[A-Z]{1,5}[-_]?[0-9]{6,30}|[0-9]{12,32})(?-u:\b)").unwrap()
});

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").unwrap()
});

/// `**** 1234`, `[card ****1234]`, `尾号1234`, `ending in 1234`, `last 4 digits 1234`.
static CARD_LAST4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:(?:[*xX•·]{2,}[\s\-]*)+|尾号\s*(?:是|为|:|：)?\s*|后四位\s*(?:是|为|:|：)?\s*|(?-u:\b)end(?:s|ing)?\s*(?:in|with)?\s*|last\s*(?:4|four)(?:\s*digits?)?\s*(?:are|is|:)?\s*)(?P<value>[0-9]{4})(?:[^0-9]|$)",
    )
    .unwrap()
});

/// `2024-03-12`, `2024年3月12日`, `3月12日`, `March 12`, `12 Mar 2024`, `昨天`.
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?xi)
        (?P<y>(?:19|20)[0-9]{2})\s*[-/.年]\s*(?P<m>[0-9]{1,2})\s*[-/.月]\s*(?P<d>[0-9]{1,2})\s*[日号]?
        | [0-9]{1,2}\s*月\s*[0-9]{1,2}\s*[日号]
        | (?-u:\b)(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+[0-9]{1,2}(?:st|nd|rd|th)?(?:,?\s+(?:19|20)[0-9]{2})?(?-u:\b)
        | (?-u:\b)[0-9]{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?(?:,?\s+(?:19|20)[0-9]{2})?(?-u:\b)
        | (?-u:\b)[0-9]{1,2}/[0-9]{1,2}/(?:19|20)?[0-9]{2}(?-u:\b)
        | 前天|昨天|今天|昨晚|今早|今天早上|(?-u:\b)(?:yesterday|today)(?-u:\b)",
    )
    .unwrap()
});

/// Country and region names: (Chinese, English, English spellings).
const COUNTRIES: &[(&str, &str, &[&str])] = &[
    ("中国", "China", &["china", "mainland china", "prc"]),
    (
        "美国",
        "United States",
        &["united states", "usa", "america", "US"],
    ),
    (
        "英国",
        "United Kingdom",
        &["united kingdom", "britain", "england", "UK"],
    ),
    ("日本", "Japan", &["japan"]),
    ("韩国", "South Korea", &["south korea", "korea"]),
    ("香港", "Hong Kong", &["hong kong", "hongkong"]),
    ("澳门", "Macau", &["macau", "macao"]),
    ("台湾", "Taiwan", &["taiwan"]),
    ("新加坡", "Singapore", &["singapore"]),
    ("马来西亚", "Malaysia", &["malaysia"]),
    ("泰国", "Thailand", &["thailand"]),
    ("越南", "Vietnam", &["vietnam", "viet nam"]),
    ("菲律宾", "Philippines", &["philippines"]),
    ("印度尼西亚", "Indonesia", &["indonesia"]),
    ("印尼", "Indonesia", &[]),
    ("印度", "India", &["india"]),
    ("澳大利亚", "Australia", &["australia"]),
    ("澳洲", "Australia", &[]),
    ("新西兰", "New Zealand", &["new zealand"]),
    ("加拿大", "Canada", &["canada"]),
    ("德国", "Germany", &["germany"]),
    ("法国", "France", &["france"]),
    ("意大利", "Italy", &["italy"]),
    ("西班牙", "Spain", &["spain"]),
    ("葡萄牙", "Portugal", &["portugal"]),
    ("荷兰", "Netherlands", &["netherlands", "holland"]),
    ("比利时", "Belgium", &["belgium"]),
    ("瑞士", "Switzerland", &["switzerland"]),
    ("瑞典", "Sweden", &["sweden"]),
    ("挪威", "Norway", &["norway"]),
    ("丹麦", "Denmark", &["denmark"]),
    ("芬兰", "Finland", &["finland"]),
    ("爱尔兰", "Ireland", &["ireland"]),
    ("奥地利", "Austria", &["austria"]),
    ("波兰", "Poland", &["poland"]),
    ("希腊", "Greece", &["greece"]),
    ("俄罗斯", "Russia", &["russia"]),
    ("土耳其", "Turkey", &["turkey", "türkiye"]),
    ("以色列", "Israel", &["israel"]),
    (
        "阿联酋",
        "United Arab Emirates",
        &["united arab emirates", "UAE", "dubai"],
    ),
    ("迪拜", "United Arab Emirates", &[]),
    ("沙特", "Saudi Arabia", &["saudi arabia"]),
    ("埃及", "Egypt", &["egypt"]),
    ("南非", "South Africa", &["south africa"]),
    ("尼日利亚", "Nigeria", &["nigeria"]),
    ("肯尼亚", "Kenya", &["kenya"]),
    ("巴西", "Brazil", &["brazil"]),
    ("墨西哥", "Mexico", &["mexico"]),
    ("阿根廷", "Argentina", &["argentina"]),
    ("智利", "Chile", &["chile"]),
    ("哥伦比亚", "Colombia", &["colombia"]),
    ("秘鲁", "Peru", &["peru"]),
    ("巴基斯坦", "Pakistan", &["pakistan"]),
    ("孟加拉", "Bangladesh", &["bangladesh"]),
    ("斯里兰卡", "Sri Lanka", &["sri lanka"]),
    ("尼泊尔", "Nepal", &["nepal"]),
    ("柬埔寨", "Cambodia", &["cambodia"]),
    ("老挝", "Laos", &["laos"]),
    ("缅甸", "Myanmar", &["myanmar", "burma"]),
    ("蒙古", "Mongolia", &["mongolia"]),
    ("哈萨克斯坦", "Kazakhstan", &["kazakhstan"]),
];

/// One regex over every country name; the match is looked up in [`COUNTRIES`].
static COUNTRY: LazyLock<Regex> = LazyLock::new(|| {
    let mut zh: Vec<&str> = COUNTRIES.iter().map(|c| c.0).collect();
    // Longest first, so 印度尼西亚 wins over 印度.
    zh.sort_by_key(|s| std::cmp::Reverse(s.chars().count()));
    let mut en_ci = Vec::new();
    let mut en_cs = Vec::new();
    for (_, _, names) in COUNTRIES {
        for n in *names {
            // Upper-case abbreviations are matched case-sensitively so that
            // "contact us" is not the United States.
            if n.chars().any(|c| c.is_ascii_uppercase()) {
                en_cs.push(regex::escape(n));
            } else {
                en_ci.push(regex::escape(n));
            }
        }
    }
    en_ci.sort_by_key(|s| std::cmp::Reverse(s.len()));
    en_cs.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Regex::new(&format!(
        r"{}|(?-u:\b)(?i:{})(?-u:\b)|(?-u:\b)(?:{})(?-u:\b)",
        zh.join("|"),
        en_ci.join("|"),
        en_cs.join("|")
    ))
    .unwrap()
});

/// Fills the built-in fields found in (redacted) `text` into `out`.
///
/// Cheap byte checks go first: most tickets have no digits, and a regex
/// that cannot match is not run (ids and card endings need four digits, a
/// date a digit or a day word).
pub(crate) fn extract_builtin(text: &str, out: &mut BTreeMap<String, String>) {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if digits > 0
        && let Some((amount, currency)) = amount(text)
    {
        out.insert("amount".into(), amount);
        if let Some(c) = currency {
            out.insert("currency".into(), c.into());
        }
    }
    if digits >= 4 {
        if let Some(v) = transaction_id(text) {
            out.insert("transaction_id".into(), v);
        }
        if let Some(v) = card_last4(text) {
            out.insert("card_last4".into(), v);
        }
    }
    if !out.contains_key("currency")
        && let Some(c) = currency(text)
    {
        out.insert("currency".into(), c.into());
    }
    if text.contains('@')
        && let Some(m) = EMAIL.find(text)
    {
        out.insert("email".into(), m.as_str().to_string());
    }
    if let Some(c) = country(text) {
        out.insert("country".into(), c);
    }
    if (digits > 0 || may_name_a_day(text))
        && let Some(d) = date(text)
    {
        out.insert("date".into(), d);
    }
}

/// Whether `text` may hold one of [`DATE`]'s day words (昨天, 今早,
/// yesterday, today): every one of them has 天, 晚 or 早, or is English.
fn may_name_a_day(text: &str) -> bool {
    text.contains(['天', '晚', '早'])
        || text
            .as_bytes()
            .windows(5)
            .any(|w| w.eq_ignore_ascii_case(b"today") || w.eq_ignore_ascii_case(b"yeste"))
}

/// Fills `playbook`'s own `[[fields]]` found in `text` into `out`.
pub(crate) fn extract_playbook_fields(
    playbook: &Playbook,
    text: &str,
    out: &mut BTreeMap<String, String>,
) {
    for field in &playbook.fields {
        if let Some(v) = field.regex.captures(text).and_then(|c| c.name("value")) {
            let v = v.as_str().trim();
            if !v.is_empty() {
                out.insert(field.name.clone(), v.to_string());
            }
        }
    }
}

/// The first amount in `text`, normalised (`1,299.00` -> `1299.00`,
/// `1.2万` -> `12000`), and its currency when the amount names one.
pub(crate) fn amount(text: &str) -> Option<(String, Option<&'static str>)> {
    for c in AMOUNT.captures_iter(text) {
        let (num, mult, cur) = if let Some(n) = c.name("n1") {
            (n, c.name("m1"), c.name("sym").map(|m| m.as_str()))
        } else if let Some(n) = c.name("n2") {
            (n, c.name("m2"), c.name("unit").map(|m| m.as_str()))
        } else {
            (c.name("n3")?, c.name("m3"), None)
        };
        let digits = num.as_str().replace(',', "");
        let factor = match mult.map(|m| m.as_str().to_ascii_lowercase()) {
            Some(m) if m == "万" || m == "w" => 10_000.0,
            Some(m) if m == "千" || m == "k" => 1_000.0,
            _ => 1.0,
        };
        let value = if factor == 1.0 {
            digits
        } else {
            let Ok(v) = digits.parse::<f64>() else {
                continue;
            };
            format_number(v * factor)
        };
        return Some((value, cur.and_then(currency_code)));
    }
    None
}

/// `12000.0` -> `12000`, `12.5` -> `12.5`, rounded to cents.
fn format_number(v: f64) -> String {
    let s = format!("{:.2}", (v * 100.0).round() / 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// ISO 4217 code of a currency symbol or word.
pub(crate) fn currency_code(s: &str) -> Option<&'static str> {
    let l = s.trim().to_lowercase();
    Some(match l.as_str() {
        "¥" | "￥" | "元" | "块" | "块钱" | "人民币" | "rmb" | "cny" | "yuan" => "CNY",
        "$" | "us$" | "usd" | "美元" | "美金" | "dollar" | "dollars" | "bucks" => "USD",
        "€" | "eur" | "euro" | "euros" | "欧元" => "EUR",
        "hk$" | "hkd" | "港币" | "港元" => "HKD",
        "jpy" | "yen" | "日元" | "日币" => "JPY",
        "£" | "gbp" | "pound" | "pounds" | "pounds sterling" | "英镑" => "GBP",
        "₩" | "krw" | "韩元" => "KRW",
        "₹" => "INR",
        "s$" | "sgd" | "新加坡元" | "新币" => "SGD",
        "a$" | "aud" | "澳元" => "AUD",
        "c$" | "cad" | "加元" => "CAD",
        "thb" | "泰铢" => "THB",
        "nt$" | "台币" => "TWD",
        _ => return None,
    })
}

/// The first currency named anywhere in `text`.
pub(crate) fn currency(text: &str) -> Option<&'static str> {
    CURRENCY
        .find_iter(text)
        .find_map(|m| currency_code(m.as_str()))
}

/// A transaction or order id: after a keyword, else a bare id-like token.
pub(crate) fn transaction_id(text: &str) -> Option<String> {
    let keyword = TXN_KEYWORD
        .captures_iter(text)
        .filter_map(|c| c.name("value"))
        .map(|m| m.as_str())
        .find(|v| v.bytes().filter(u8::is_ascii_digit).count() >= 4);
    keyword
        .or_else(|| TXN_BARE.find(text).map(|m| m.as_str()))
        .map(|v| v.trim_end_matches(['-', '_']).to_string())
}

/// The card's last four digits, from a mask or a phrase like `尾号1234`.
pub(crate) fn card_last4(text: &str) -> Option<String> {
    CARD_LAST4
        .captures(text)
        .and_then(|c| c.name("value"))
        .map(|m| m.as_str().to_string())
}

/// A country or region named in `text`, in the language it was named in.
/// A foreign country wins over China: for a wallet app based in China the
/// other side of a cross-border payment is what the agent needs.
pub(crate) fn country(text: &str) -> Option<String> {
    let mut first_china = None;
    for m in COUNTRY.find_iter(text) {
        let found = m.as_str();
        let entry = COUNTRIES.iter().find(|(zh, _, names)| {
            *zh == found || names.iter().any(|n| n.eq_ignore_ascii_case(found))
        })?;
        let is_zh = entry.0 == found;
        let name = if is_zh { entry.0 } else { entry.1 };
        if entry.1 == "China" {
            first_china.get_or_insert(name);
        } else {
            return Some(name.to_string());
        }
    }
    first_china.map(str::to_string)
}

/// The first date in `text`: ISO form when it has year, month and day,
/// otherwise as written (`3月12日`, `March 12`, `昨天`).
pub(crate) fn date(text: &str) -> Option<String> {
    let c = DATE.captures(text)?;
    if let (Some(y), Some(m), Some(d)) = (c.name("y"), c.name("m"), c.name("d")) {
        let (m, d): (u32, u32) = (m.as_str().parse().ok()?, d.as_str().parse().ok()?);
        if (1..=12).contains(&m) && (1..=31).contains(&d) {
            return Some(format!("{}-{m:02}-{d:02}", y.as_str()));
        }
        return None;
    }
    Some(c.get(0)?.as_str().trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amt(text: &str) -> Option<(String, Option<&'static str>)> {
        amount(text)
    }

    #[test]
    fn amounts_with_symbols_codes_and_units() {
        let s = |a: &str, c: Option<&'static str>| Some((a.to_string(), c));
        assert_eq!(amt("扣了¥1,299.00还没到账"), s("1299.00", Some("CNY")));
        assert_eq!(amt("I paid 50 USD yesterday"), s("50", Some("USD")));
        assert_eq!(amt("转了1.2万过去"), s("12000", None));
        assert_eq!(amt("一共1,299元"), s("1299", Some("CNY")));
        assert_eq!(amt("charged $30 twice"), s("30", Some("USD")));
        assert_eq!(amt("付了300块"), s("300", Some("CNY")));
        assert_eq!(amt("EUR 20.50 fee"), s("20.50", Some("EUR")));
        assert_eq!(amt("收了我2万日元"), s("20000", Some("JPY")));
        assert_eq!(amt("about 45 euros"), s("45", Some("EUR")));
        assert_eq!(amt("HK$ 88"), s("88", Some("HKD")));
        assert_eq!(amt("£12 missing"), s("12", Some("GBP")));
        assert_eq!(amt("$5k transfer"), s("5000", Some("USD")));
    }

    #[test]
    fn no_amount_in_plain_numbers() {
        assert_eq!(amt("订单 20240312 有问题"), None);
        assert_eq!(amt("I waited 3 days"), None);
    }

    #[test]
    fn currency_from_words() {
        assert_eq!(currency("美元兑人民币的汇率"), Some("USD"));
        assert_eq!(currency("how many pounds sterling"), Some("GBP"));
        assert_eq!(currency("我要换港币"), Some("HKD"));
        assert_eq!(currency("nothing here"), None);
    }

    #[test]
    fn builtin_fields_fill_currency_without_amount() {
        let mut out = BTreeMap::new();
        extract_builtin("想问下欧元汇率", &mut out);
        assert_eq!(out.get("currency").map(String::as_str), Some("EUR"));
        assert!(!out.contains_key("amount"));
    }

    #[test]
    fn transaction_ids() {
        assert_eq!(
            transaction_id("订单号：2024031200123 没到账").as_deref(),
            Some("2024031200123")
        );
        assert_eq!(
            transaction_id("transaction id TX88812345 failed").as_deref(),
            Some("TX88812345")
        );
        assert_eq!(
            transaction_id("order #A-998123 refund").as_deref(),
            Some("A-998123")
        );
        assert_eq!(
            transaction_id("交易单号是TP20240312001").as_deref(),
            Some("TP20240312001")
        );
        assert_eq!(
            transaction_id("ref TP2024031298 please").as_deref(),
            Some("TP2024031298")
        );
        assert_eq!(
            transaction_id("pending since TP2024031298 was sent").as_deref(),
            Some("TP2024031298")
        );
        assert_eq!(transaction_id("my order status is wrong"), None);
        assert_eq!(transaction_id("手机13800138000"), None);
    }

    #[test]
    fn emails() {
        let mut out = BTreeMap::new();
        extract_builtin("请发到 li.wei+topay@example.com.cn 谢谢", &mut out);
        assert_eq!(out["email"], "li.wei+topay@example.com.cn");
    }

    #[test]
    fn card_last4_from_masks_and_words() {
        assert_eq!(
            card_last4("card **** 1234 declined").as_deref(),
            Some("1234")
        );
        assert_eq!(
            card_last4("卡 **** **** **** 5678 被拒").as_deref(),
            Some("5678")
        );
        assert_eq!(card_last4("尾号1234的卡").as_deref(), Some("1234"));
        assert_eq!(
            card_last4("the card ending in 4321").as_deref(),
            Some("4321")
        );
        assert_eq!(
            card_last4("last 4 digits are 9876").as_deref(),
            Some("9876")
        );
        assert_eq!(
            card_last4("卡号[card ****1111]被拒").as_deref(),
            Some("1111")
        );
        assert_eq!(card_last4("I paid 1234 yuan"), None);
    }

    #[test]
    fn card_last4_from_a_full_number_via_redaction() {
        let red = crate::redact::redact("卡号 4111 1111 1111 1111 付不了");
        let mut out = BTreeMap::new();
        extract_builtin(&red, &mut out);
        assert_eq!(out.get("card_last4").map(String::as_str), Some("1111"));
        assert!(out.values().all(|v| !v.contains("4111111111111111")));
    }

    #[test]
    fn countries_in_both_languages() {
        assert_eq!(country("从日本给家里转账").as_deref(), Some("日本"));
        assert_eq!(country("付款到印度尼西亚").as_deref(), Some("印度尼西亚"));
        assert_eq!(
            country("sending money to Germany").as_deref(),
            Some("Germany")
        );
        assert_eq!(
            country("I'm in the US now").as_deref(),
            Some("United States")
        );
        assert_eq!(country("please contact us").as_deref(), None);
        assert_eq!(country("从中国汇款到美国").as_deref(), Some("美国"));
        assert_eq!(country("在中国能用吗").as_deref(), Some("中国"));
    }

    #[test]
    fn builtin_fields_after_the_cheap_checks() {
        let fields = |t: &str| {
            let mut out = BTreeMap::new();
            extract_builtin(t, &mut out);
            out
        };
        assert_eq!(
            fields("YESTERDAY my card was declined")["date"],
            "YESTERDAY"
        );
        assert_eq!(fields("今早付的钱没到")["date"], "今早");
        assert_eq!(fields("paid on March 3")["date"], "March 3");
        assert_eq!(fields("order 123 failed").get("transaction_id"), None);
        assert_eq!(fields("ref TP123456 failed")["transaction_id"], "TP123456");
        assert_eq!(fields("no digits, no day here"), BTreeMap::new());
    }

    #[test]
    fn dates() {
        assert_eq!(date("2024年3月12日付的款").as_deref(), Some("2024-03-12"));
        assert_eq!(date("on 2024-03-05 at noon").as_deref(), Some("2024-03-05"));
        assert_eq!(date("3月12日那笔").as_deref(), Some("3月12日"));
        assert_eq!(
            date("paid on March 12, 2024").as_deref(),
            Some("March 12, 2024")
        );
        assert_eq!(date("since 5th Jan").as_deref(), Some("5th Jan"));
        assert_eq!(date("昨天转的").as_deref(), Some("昨天"));
        assert_eq!(date("nothing"), None);
    }
}
