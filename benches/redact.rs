//! Redaction cost on the webhook hot path: every ticket body, customer
//! reply, note and outbound message goes through `redact`.
//!
//! Inputs: a typical clean ticket (the common case: nothing to mask), a
//! ticket with a card number, CVV and code, the same in full-width digits,
//! and a 4 KB mixed ticket.

use std::hint::black_box;

use caseroom::redact::redact;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CLEAN: &str = "您好，我昨天在 Topay 上给订单 2024031200012345 付款 ¥1,299.00 一直失败，\
                     提示交易被拒绝，手机 13800138000，请帮忙看看。Thanks!";
const SECRETS: &str = "My card 4111 1111 1111 1111 was declined, CVV 123, the code is 884422, \
                       password: hunter2. 卡号 6222-0212-3456-7890-128 安全码是321";
const WIDE: &str = "我的卡是４１１１ １１１１ １１１１ １１１１，安全码１２３，验证码８８４４２２";

fn bench(c: &mut Criterion) {
    let long: String = [CLEAN, SECRETS, WIDE, "order 2024-03-12 amount 350.00 "]
        .iter()
        .cycle()
        .take(24)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let mut group = c.benchmark_group("redact");
    for (name, text) in [
        ("clean", CLEAN),
        ("secrets", SECRETS),
        ("full_width", WIDE),
        ("long_4kb", long.as_str()),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| redact(black_box(text))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
