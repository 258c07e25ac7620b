use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use super::*;
use crate::instruction::{Kind, Payee, PayeeView};
use crate::parse::{parse, Parsed};
use crate::policy::{Merchant, RefundLimits};

const W1: &str = "20261121T1500Z";
const W2: &str = "20261122T1500Z";

fn wid(s: &str) -> WindowId {
    s.parse().expect("window id")
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn instr(json: &str) -> Instruction {
    match parse(json.as_bytes()) {
        Parsed::Valid { instruction, .. } => instruction,
        Parsed::Invalid { reject, .. } => panic!("fixture rejected: {reject:?}"),
    }
}

fn refund(id: &str, orig: &str, amount: &str, original_amount: &str, account: &str) -> Instruction {
    instr(&format!(
        r#"{{"id":"{id}","type":"refund","merchant_id":"M1","amount":"{amount}","currency":"CNY","event_time":"2026-11-21T10:00:00+08:00","fee":"0.10","original_transaction_id":"{orig}","original_amount":"{original_amount}","original_time":"2026-11-01T10:00:00+08:00","payee":{{"name":"P {account}","account":"{account}","bank":"BKCHCNBJ"}}}}"#
    ))
}

fn reversal(id: &str, reverses: &str, amount: &str, time: &str) -> Instruction {
    instr(&format!(
        r#"{{"id":"{id}","type":"refund_reversal","merchant_id":"M1","amount":"{amount}","currency":"CNY","event_time":"{time}","reverses":"{reverses}"}}"#
    ))
}

fn capture(id: &str, merchant: &str, amount: &str, currency: &str) -> Instruction {
    instr(&format!(
        r#"{{"id":"{id}","type":"capture","merchant_id":"{merchant}","amount":"{amount}","currency":"{currency}","event_time":"2026-11-21T09:00:00+08:00"}}"#
    ))
}

fn at(window: &str) -> Placement {
    Placement { window: wid(window), late_from: None }
}

fn netter() -> Netter {
    Netter::new(Arc::new(Policy::default()))
}

fn reason(result: Result<(), Reject>) -> RejectReason {
    result.expect_err("should be rejected").reason
}

fn close(n: &mut Netter) -> Vec<SettledBatch> {
    n.close_earliest().expect("an open window").1
}

#[test]
fn partial_refunds_are_capped_by_the_original() {
    let mut n = netter();
    n.apply(1, &refund("R1", "T1", "60.00", "100.00", "A1"), at(W1)).expect("first");
    n.apply(2, &refund("R2", "T1", "40.00", "100.00", "A1"), at(W1)).expect("second");
    assert_eq!(
        reason(n.apply(3, &refund("R3", "T1", "0.01", "100.00", "A1"), at(W1))),
        RejectReason::RefundExceedsOriginal
    );
    assert_eq!(
        reason(n.apply(4, &refund("R4", "T9", "101.00", "100.00", "A1"), at(W1))),
        RejectReason::RefundExceedsOriginal
    );
    assert_eq!(
        reason(n.apply(5, &refund("R5", "T1", "1.00", "90.00", "A1"), at(W1))),
        RejectReason::OriginalAmountMismatch
    );
    let batch = &close(&mut n)[0];
    assert_eq!(batch.totals.refunds, d("100.00"));
    assert_eq!(batch.totals.fees, d("0.20"));
    assert_eq!(batch.totals.net, d("-100.20"));
    assert_eq!(batch.credits.len(), 1, "same payee combined");
    assert_eq!(batch.credits.to_vec()[0].refunds, 2);
    assert_eq!(batch.counts, Counts { captures: 0, refunds: 2, reversals: 0, late: 0 });
}

#[test]
fn reversal_in_the_same_window_nets_out_but_fees_stay() {
    let mut n = netter();
    n.apply(1, &refund("R1", "T1", "30.00", "30.00", "A1"), at(W1)).expect("refund");
    n.apply(2, &reversal("V1", "R1", "30.00", "2026-11-21T11:00:00+08:00"), at(W1)).expect("reversal");
    n.apply(3, &refund("R2", "T1", "30.00", "30.00", "A2"), at(W1)).expect("refundable again");
    let batch = &close(&mut n)[0];
    assert_eq!(batch.totals.refunds, d("30.00"));
    assert_eq!(batch.totals.fees, d("0.20"));
    assert_eq!(batch.credits.len(), 1);
    assert_eq!(batch.credits.to_vec()[0].creditor.account, "A2");
    let effects: Vec<_> = batch.details.iter().map(|x| x.effect).collect();
    assert_eq!(effects, [Effect::RefundReversed, Effect::NettedReversal, Effect::Refunded]);
    assert_eq!(batch.counts, Counts { captures: 0, refunds: 2, reversals: 1, late: 0 });
    assert_eq!(batch.details.to_vec()[2].credit, Some(0));
    assert_eq!(batch.details.to_vec()[0].credit, None);
}

#[test]
fn reversal_in_a_later_window_is_a_recovery() {
    let mut n = netter();
    n.apply(1, &refund("R1", "T1", "30.00", "30.00", "A1"), at(W1)).expect("refund");
    let first = close(&mut n);
    assert_eq!(first[0].totals.carried_out, d("-30.10"));
    n.apply(2, &reversal("V1", "R1", "30.00", "2026-11-22T11:00:00+08:00"), at(W2)).expect("reversal");
    let second = &close(&mut n)[0];
    assert_eq!(second.totals.recoveries, d("30.00"));
    assert_eq!(second.totals.carried_in, d("-30.10"));
    assert_eq!(second.totals.net, d("-0.10"));
    assert_eq!(second.details.to_vec()[0].effect, Effect::Recovery);
    assert!(second.credits.is_empty());
}

#[test]
fn reversal_rules() {
    let mut n = netter();
    n.apply(1, &refund("R1", "T1", "30.00", "30.00", "A1"), at(W1)).expect("refund");
    let early = "2026-11-21T09:59:59+08:00";
    let ok_time = "2026-11-21T10:00:00+08:00";
    assert_eq!(
        reason(n.apply(2, &reversal("V1", "R9", "30.00", ok_time), at(W1))),
        RejectReason::ReversalUnknownRefund
    );
    assert_eq!(
        reason(n.apply(3, &reversal("V1", "R1", "29.00", ok_time), at(W1))),
        RejectReason::ReversalAmountMismatch
    );
    assert_eq!(reason(n.apply(4, &reversal("V1", "R1", "30.00", early), at(W1))), RejectReason::ReversalBeforeRefund);
    let usd = instr(
        r#"{"id":"V1","type":"refund_reversal","merchant_id":"M1","amount":"30.00","currency":"USD","event_time":"2026-11-21T11:00:00+08:00","reverses":"R1"}"#,
    );
    assert_eq!(reason(n.apply(5, &usd, at(W1))), RejectReason::CurrencyMismatch);
    let other = instr(
        r#"{"id":"V1","type":"refund_reversal","merchant_id":"M2","amount":"30.00","currency":"CNY","event_time":"2026-11-21T11:00:00+08:00","reverses":"R1"}"#,
    );
    assert_eq!(reason(n.apply(6, &other, at(W1))), RejectReason::ReversalUnknownRefund);
    n.apply(7, &reversal("V1", "R1", "30.00", ok_time), at(W1)).expect("reversal at the same instant");
    assert_eq!(
        reason(n.apply(8, &reversal("V2", "R1", "30.00", ok_time), at(W1))),
        RejectReason::ReversalAlreadyApplied
    );
}

#[test]
fn refund_time_rules_and_capture_currency() {
    let mut n = netter();
    let before = instr(&refund_json_with_times("2026-11-21T10:00:00Z", "2026-11-21T10:00:01Z"));
    assert_eq!(reason(n.apply(1, &before, at(W1))), RejectReason::RefundBeforeOriginal);
    let expired = instr(&refund_json_with_times("2026-11-21T10:00:00Z", "2025-11-21T09:59:59Z"));
    assert_eq!(reason(n.apply(2, &expired, at(W1))), RejectReason::RefundPeriodExpired);
    let exactly_a_year = instr(&refund_json_with_times("2026-11-21T10:00:00Z", "2025-11-21T10:00:00Z"));
    n.apply(3, &exactly_a_year, at(W1)).expect("365 days is within the period");
    n.apply(4, &capture("T2", "M1", "500", "JPY"), at(W1)).expect("capture");
    let cny_of_jpy = refund("R2", "T2", "1.00", "500.00", "A1");
    assert_eq!(reason(n.apply(5, &cny_of_jpy, at(W1))), RejectReason::CurrencyMismatch);
}

/// The reproduction of issue 9: a capture of 10.00 at 09:00+08:00, then refunds that lie about it.
#[test]
fn a_refund_of_a_known_capture_is_held_to_that_capture() {
    let refund_of = |id: &str, amount: &str, stated: &str, event: &str, stated_time: &str| {
        instr(&format!(
            r#"{{"id":"{id}","type":"refund","merchant_id":"M1","amount":"{amount}","currency":"CNY","event_time":"{event}","original_transaction_id":"C1","original_amount":"{stated}","original_time":"{stated_time}","payee":{{"name":"P","account":"A1","bank":"BKCHCNBJ"}}}}"#
        ))
    };
    let (ok_time, day_before) = ("2026-11-21T10:00:00+08:00", "2026-11-20T09:00:00+08:00");
    let mut n = netter();
    n.apply(1, &capture("C1", "M1", "10.00", "CNY"), at(W1)).expect("capture");
    let inflated = refund_of("R1", "1000000.00", "1000000.00", ok_time, day_before);
    assert_eq!(reason(n.apply(2, &inflated, at(W1))), RejectReason::OriginalAmountMismatch);
    let over = refund_of("R2", "10.01", "10.00", ok_time, day_before);
    assert_eq!(reason(n.apply(3, &over, at(W1))), RejectReason::RefundExceedsOriginal);
    let before_capture = refund_of("R3", "1.00", "10.00", "2026-11-21T08:00:00+08:00", day_before);
    assert_eq!(reason(n.apply(4, &before_capture, at(W1))), RejectReason::RefundBeforeOriginal);
    let a_year_after = refund_of("R4", "1.00", "10.00", "2027-11-22T09:00:00+08:00", "2027-11-01T09:00:00+08:00");
    assert_eq!(reason(n.apply(5, &a_year_after, at(W2))), RejectReason::RefundPeriodExpired);
    let usd = instr(&format!(
        r#"{{"id":"R5","type":"refund","merchant_id":"M1","amount":"1.00","currency":"USD","event_time":"{ok_time}","original_transaction_id":"C1","original_amount":"10.00","original_time":"{day_before}","payee":{{"name":"P","account":"A1","bank":"BKCHCNBJ"}}}}"#
    ));
    assert_eq!(reason(n.apply(6, &usd, at(W1))), RejectReason::CurrencyMismatch);
    n.apply(7, &refund_of("R6", "10.00", "10.00", ok_time, day_before), at(W1))
        .expect("the whole capture, stated right");
}

fn refund_json_with_times(event: &str, original: &str) -> String {
    format!(
        r#"{{"id":"RX","type":"refund","merchant_id":"M1","amount":"1.00","currency":"CNY","event_time":"{event}","original_transaction_id":"TX","original_amount":"5.00","original_time":"{original}","payee":{{"name":"P","account":"A1","bank":"BKCHCNBJ"}}}}"#
    )
}

#[test]
fn payouts_need_a_registry_and_debt_carries_forward() {
    let account = Payee { name: "Shop".into(), account: "6222000011112222".into(), bank: "BKCHCNBJ".into() };
    let mut registry = BTreeMap::new();
    registry.insert("M1".into(), Merchant { id: "M1".into(), account });
    let policy = Policy { registry: Some(registry), ..Policy::default() };
    let mut n = Netter::new(Arc::new(policy));
    assert_eq!(reason(n.apply(1, &capture("C0", "M9", "10.00", "CNY"), at(W1))), RejectReason::UnknownMerchant);
    n.apply(2, &refund("R1", "T1", "50.00", "50.00", "A1"), at(W1)).expect("refund");
    close(&mut n);
    n.apply(3, &capture("C1", "M1", "80.00", "CNY"), at(W2)).expect("capture");
    let batch = &close(&mut n)[0];
    assert_eq!(batch.totals.carried_in, d("-50.10"));
    assert_eq!(batch.totals.payout, d("29.90"));
    let credits = batch.credits.to_vec();
    let payout = credits.last().expect("payout credit");
    assert_eq!((payout.kind, payout.amount), (CreditKind::Payout, d("29.90")));
    assert_eq!(payout.end_to_end_id.len(), 35);
    assert!(payout.end_to_end_id.starts_with("20261122T1500ZP"));
}

#[test]
fn refund_limits_per_window() {
    let mut max_amount = BTreeMap::new();
    max_amount.insert(crate::money::Currency::from_code("CNY").expect("CNY"), d("50.00"));
    let limits = RefundLimits { max_count: Some(2), max_amount };
    let mut n = Netter::new(Arc::new(Policy { default_limits: limits, ..Policy::default() }));
    n.apply(1, &refund("R1", "T1", "30.00", "90.00", "A1"), at(W1)).expect("first");
    assert_eq!(
        reason(n.apply(2, &refund("R2", "T1", "30.00", "90.00", "A1"), at(W1))),
        RejectReason::MerchantLimitExceeded
    );
    n.apply(3, &refund("R3", "T1", "20.00", "90.00", "A1"), at(W1)).expect("within amount");
    assert_eq!(
        reason(n.apply(4, &refund("R4", "T1", "1.00", "90.00", "A1"), at(W1))),
        RejectReason::MerchantLimitExceeded
    );
    n.apply(5, &refund("R5", "T1", "1.00", "90.00", "A1"), at(W2)).expect("next window starts afresh");
}

#[test]
fn late_instructions_are_counted_and_flagged() {
    let mut n = netter();
    let place = Placement { window: wid(W2), late_from: Some(wid(W1)) };
    n.apply(1, &capture("C1", "M1", "5.00", "CNY"), place).expect("late capture");
    let batch = &close(&mut n)[0];
    assert_eq!(batch.counts.late, 1);
    assert_eq!(batch.details.to_vec()[0].late_from, Some(wid(W1)));
    assert_eq!(batch.details.to_vec()[0].kind, Kind::Capture);
}

#[test]
#[should_panic(expected = "closed window")]
fn placing_into_a_closed_window_is_a_bug() {
    let mut n = netter();
    n.apply(1, &capture("C1", "M1", "5.00", "CNY"), at(W2)).expect("capture");
    close(&mut n);
    let _ = n.apply(2, &capture("C2", "M1", "5.00", "CNY"), at(W1));
}

#[test]
fn expiry_forgets_merchants_nothing_refers_to_and_reuses_their_handles() {
    let mut n = netter();
    n.apply(1, &capture("C1", "M1", "5.00", "CNY"), at(W1)).expect("M1");
    n.apply(2, &capture("C2", "M2", "500.00", "CNY"), at(W1)).expect("M2");
    n.apply(3, &refund("R1", "T1", "60.00", "100.00", "A1"), at(W1)).expect("M1 refund");
    close(&mut n);
    let later: Timestamp = "2027-06-01T00:00:00Z".parse().expect("time");
    n.expire(later);
    // M1 ends the window in debt (5.00 - 60.00 - 0.10), so it is kept; M2 was paid out and its
    // history is gone, so it is forgotten.
    assert_eq!(n.merchants_len(), 1);
    n.apply(4, &capture("C3", "M3", "1.00", "CNY"), at(W2)).expect("M3 takes M2's handle");
    n.apply(5, &capture("C4", "M2", "1.00", "CNY"), at(W2)).expect("M2 again, as new");
    n.apply(6, &capture("C5", "M1", "1.00", "CNY"), at(W2)).expect("M1 still known");
    assert_eq!(n.merchants_len(), 3);
    let batches = close(&mut n);
    let merchants: Vec<String> = batches.iter().map(|b| b.merchant_id.to_string()).collect();
    assert_eq!(merchants, ["M1", "M2", "M3"], "batches by merchant id whatever the handles");
    assert_eq!(batches[0].totals.carried_in, d("-55.10"), "M1's debt was kept with it");
    let restored = Netter::restore(Arc::new(Policy::default()), n.state().clone());
    assert_eq!(restored.merchants_len(), 3, "handles survive a checkpoint");
}

/// The EndToEndId format (docs/decisions.md), pinned against SHA-256 computed independently
/// (Python's hashlib over the same fields): a faster maker must not change a byte.
#[test]
fn end_to_end_ids_are_window_tag_and_hash() {
    let ids = EndToEndIds::new(wid("20250301T1600Z"));
    let payee = PayeeView { name: "Li Lei", account: "DE89370400440532013000", bank: "COBADEFFXXX" };
    let cny = crate::money::Currency::from_code("CNY").expect("CNY");
    let first = ids.make(CreditKind::Refund, "M1", cny, payee, 0);
    assert_eq!(first.as_str(), "20250301T1600ZR2088414e429edaf3f022");
    let split = ids.make(CreditKind::Payout, "M1", cny, payee, 2);
    assert_eq!(split.as_str(), "20250301T1600ZPbd49ee7e087553f5db74");
}

/// `apply_all` (lookups warmed in runs) gives what `apply` one by one gives: the same result
/// for each instruction, accepted or rejected for the same reason, and the same batches.
#[test]
fn applying_in_runs_is_applying_one_by_one() {
    let mut instructions = Vec::new();
    for i in 0..40 {
        let (c, r) = (format!("C{i}"), format!("R{i}"));
        instructions.push(capture(&c, "M1", "100.00", "CNY"));
        instructions.push(refund(&r, &c, "60.00", "100.00", &format!("6222{i:04}")));
        // Every third original is refunded past what it captured; every fifth refund reversed.
        if i % 3 == 0 {
            instructions.push(refund(&format!("X{i}"), &c, "50.00", "100.00", "62229999"));
        }
        if i % 5 == 0 {
            instructions.push(reversal(&format!("V{i}"), &r, "60.00", "2026-11-21T11:00:00+08:00"));
            instructions.push(reversal(&format!("W{i}"), &r, "60.00", "2026-11-21T11:00:00+08:00"));
        }
    }
    let (mut one, mut runs) = (netter(), netter());
    let singly: Vec<Result<(), Reject>> =
        instructions.iter().enumerate().map(|(seq, ins)| one.apply(seq as u64, ins, at(W1))).collect();
    let mut in_runs = Vec::new();
    let placed = instructions.iter().enumerate().map(|(seq, ins)| (seq as u64, ins, at(W1), seq));
    runs.apply_all(placed, |seq, _, result| in_runs.push((seq, result)));
    assert_eq!(in_runs.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (0..instructions.len()).collect::<Vec<_>>());
    let in_runs: Vec<Result<(), Reject>> = in_runs.into_iter().map(|(_, result)| result).collect();
    assert_eq!(in_runs, singly);
    assert!(singly.iter().filter(|r| r.is_err()).count() >= 20, "the mix has rejections");
    assert_eq!(close(&mut runs), close(&mut one));
}
