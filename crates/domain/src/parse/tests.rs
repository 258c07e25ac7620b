use super::*;
use crate::reject::RejectReason as R;

const REFUND: &str = r#"{"id":"R1","type":"refund","merchant_id":"M1","amount":"12.30","currency":"CNY","event_time":"2026-11-21T10:00:00+08:00","original_transaction_id":"T1","original_amount":"100.00","original_time":"2026-11-20T09:00:00+08:00","payee":{"name":"Li Lei","account":"6222021234567890","bank":"BKCHCNBJ"}}"#;

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(REFUND).expect("fixture");
    let (obj, key) = match field.split_once('.') {
        Some((outer, inner)) => (v[outer].as_object_mut().expect("object"), inner),
        None => (v.as_object_mut().expect("object"), field),
    };
    if value == "<absent>" {
        obj.remove(key);
    } else {
        obj.insert(key.to_owned(), serde_json::from_str(value).expect("value"));
    }
    v.to_string()
}

fn reject_of(text: &str) -> (RejectReason, Option<&'static str>) {
    match parse(text.as_bytes()) {
        Parsed::Invalid { reject, .. } => (reject.reason, reject.field),
        Parsed::Valid { .. } => panic!("accepted: {text}"),
    }
}

#[test]
fn parses_a_refund() {
    let Parsed::Valid { instruction, .. } = parse(REFUND.as_bytes()) else { panic!("rejected") };
    assert_eq!(instruction.kind(), Kind::Refund);
    assert_eq!(instruction.amount.to_string(), "12.3");
    assert_eq!(instruction.reference(), Some("T1"));
    assert_eq!(instruction.refund().expect("refund").payee.bank, "BKCHCNBJ");
    assert_eq!(instruction.fee, rust_decimal::Decimal::ZERO);
}

#[test]
fn every_schema_rule_has_its_reason() {
    let cases: &[(&str, &str, R, Option<&str>)] = &[
        ("id", "<absent>", R::MissingField, Some("id")),
        ("id", r#""has space""#, R::InvalidField, Some("id")),
        ("id", &format!("{:?}", "x".repeat(65)), R::InvalidField, Some("id")),
        ("type", r#""chargeback""#, R::InvalidField, Some("type")),
        ("merchant_id", "<absent>", R::MissingField, Some("merchant_id")),
        ("merchant_id", r#""M:1""#, R::InvalidField, Some("merchant_id")),
        ("amount", "12.3", R::InvalidField, Some("amount")),
        ("amount", r#""12.345""#, R::AmountScale, Some("amount")),
        ("amount", r#""0.00""#, R::AmountNotPositive, Some("amount")),
        ("amount", r#""-1.00""#, R::AmountNotPositive, Some("amount")),
        ("amount", r#""1000000000000.01""#, R::AmountTooLarge, Some("amount")),
        ("currency", r#""XTS""#, R::UnsupportedCurrency, Some("currency")),
        ("currency", r#""cny""#, R::InvalidField, Some("currency")),
        ("event_time", r#""2026-11-21 10:00:00""#, R::InvalidField, Some("event_time")),
        ("event_time", r#""2026-11-21T10:00:00""#, R::InvalidField, Some("event_time")),
        ("event_time", r#""1969-12-31T23:59:59Z""#, R::InvalidField, Some("event_time")),
        ("event_time", r#""9000-01-01T00:00:00Z""#, R::InvalidField, Some("event_time")),
        ("original_time", r#""0001-01-01T00:00:00Z""#, R::InvalidField, Some("original_time")),
        ("fee", r#""-0.01""#, R::InvalidField, Some("fee")),
        ("fee", r#""0.001""#, R::AmountScale, Some("fee")),
        ("original_transaction_id", "<absent>", R::MissingField, Some("original_transaction_id")),
        ("original_amount", r#""1.001""#, R::AmountScale, Some("original_amount")),
        ("original_time", "<absent>", R::MissingField, Some("original_time")),
        ("payee", "<absent>", R::MissingField, Some("payee")),
        ("payee", r#""Li Lei""#, R::InvalidField, Some("payee")),
        ("payee.account", "<absent>", R::MissingField, Some("payee.account")),
        ("payee.account", r#""DE00370400440532013000""#, R::InvalidField, Some("payee.account")),
        ("payee.bank", "7", R::InvalidField, Some("payee.bank")),
    ];
    for (field, value, reason, named) in cases {
        assert_eq!(reject_of(&with(field, value)), (*reason, *named), "{field} = {value}");
    }
}

#[test]
fn malformed_and_too_large() {
    assert_eq!(reject_of("not json").0, R::Malformed);
    assert_eq!(reject_of("[1,2]").0, R::Malformed);
    assert_eq!(reject_of("").0, R::Malformed);
    assert_eq!(reject_of(r#"{"id":"a","id":"b"}"#).0, R::Malformed);
    let big = format!(r#"{{"id":"X","pad":"{}"}}"#, "a".repeat(MAX_MESSAGE_BYTES));
    assert_eq!(reject_of(&big).0, R::TooLarge);
    assert!(matches!(parse(b"{\"id\":\"\xff\"}"), Parsed::Invalid { reject, .. } if reject.reason == R::Malformed));
}

#[test]
fn type_specific_fields_are_required_only_for_their_type() {
    let capture = r#"{"id":"C1","type":"capture","merchant_id":"M1","amount":"100","currency":"JPY","event_time":"2026-11-21T10:00:00Z","fee":"1"}"#;
    assert!(matches!(parse(capture.as_bytes()), Parsed::Valid { .. }));
    let reversal = r#"{"id":"V1","type":"refund_reversal","merchant_id":"M1","amount":"1.00","currency":"CNY","event_time":"2026-11-21T10:00:00Z"}"#;
    assert_eq!(reject_of(reversal), (R::MissingField, Some("reverses")));
}

#[test]
fn fingerprint_ignores_order_and_whitespace_but_not_content() {
    let fp = |text: &str| match parse(text.as_bytes()) {
        Parsed::Valid { fingerprint, .. } => fingerprint,
        Parsed::Invalid { identity, .. } => identity.expect("identity").fingerprint,
    };
    let reordered: serde_json::Map<String, serde_json::Value> = serde_json::from_str(REFUND).expect("fixture");
    let mut pairs: Vec<_> = reordered.into_iter().collect();
    pairs.reverse();
    let reordered =
        format!("{{ {} }}", pairs.iter().map(|(k, v)| format!("{k:?} : {v}")).collect::<Vec<_>>().join(" ,\n "));
    assert_eq!(fp(REFUND), fp(&reordered));
    assert_ne!(fp(REFUND), fp(&with("amount", r#""12.31""#)));
    assert_ne!(fp(REFUND), fp(&with("extra", "1")), "unknown fields are part of the content");
    assert_ne!(fp(REFUND), fp(&with("payee.name", r#""Han Meimei""#)));
    assert_eq!(fp(&with("amount", "5")), fp(&with("amount", "5")), "invalid instructions keep an identity");
}

#[test]
fn time_range_bounds_are_exact() {
    assert_eq!(
        jiff::Timestamp::from_second(super::fields::LATEST_TIME).expect("ts").to_string(),
        "9000-01-01T00:00:00Z"
    );
    let valid = |time: &str| matches!(parse(with("original_time", time).as_bytes()), Parsed::Valid { .. });
    assert!(valid(r#""1970-01-01T00:00:00Z""#), "the epoch itself is in range");
    assert!(matches!(parse(with("event_time", r#""8999-12-31T23:59:59.999Z""#).as_bytes()), Parsed::Valid { .. }));
}

#[test]
fn unknown_fields_are_ignored_for_validation() {
    assert!(matches!(parse(with("channel", r#"{"pos":true}"#).as_bytes()), Parsed::Valid { .. }));
}

#[test]
fn escaped_strings_are_unescaped() {
    let text = REFUND.replace(r#""name":"Li Lei""#, r#""name":"Li \"Lei\" \u00e9""#);
    let Parsed::Valid { instruction, .. } = parse(text.as_bytes()) else { panic!("rejected") };
    assert_eq!(instruction.refund().expect("refund").payee.name, "Li \"Lei\" é");
}
