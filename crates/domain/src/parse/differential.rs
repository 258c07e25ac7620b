//! The fast decoder against the reference tree parser: generated instructions, then the same
//! bytes mutated (a byte changed, inserted or removed; a value retyped; a key repeated, escaped or
//! added), must get the same answer from both: accept or reject, reason, message, every field and
//! the fingerprint. The `parse_differential` fuzz target (`fuzz/`) runs the same comparison on
//! coverage-guided inputs; [`differential_line`] is what both call.

use proptest::prelude::*;

use super::*;

fn kind() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("capture"), Just("refund"), Just("refund_reversal"), Just("chargeback")]
}

fn amount() -> impl Strategy<Value = String> {
    prop_oneof![
        "[1-9][0-9]{0,6}\\.[0-9]{2}",
        "[0-9]{1,4}",
        Just("0.00".to_owned()),
        Just("-1.00".to_owned()),
        "[0-9]\\.[0-9]{3}",
        Just("1e3".to_owned()),
        Just("99999999999999".to_owned()),
    ]
}

fn time() -> impl Strategy<Value = String> {
    prop_oneof![
        (2020..2030u32, 1..13u32, 1..29u32, 0..24u32)
            .prop_map(|(y, m, d, h)| format!("{y}-{m:02}-{d:02}T{h:02}:00:00+08:00")),
        Just("2026-11-21T10:00:00.123456789Z".to_owned()),
        Just("2026-02-30T10:00:00Z".to_owned()),
        Just("1969-12-31T23:59:59Z".to_owned()),
        Just("2026-11-21 10:00:00Z".to_owned()),
    ]
}

/// One instruction line, valid or not, with its fields in a generated order.
fn line() -> impl Strategy<Value = String> {
    let id = prop_oneof!["[A-Z][0-9]{1,8}", Just(String::new()), Just("has space".to_owned())];
    let merchant = prop_oneof!["M[0-9]{5}", Just("M/1".to_owned())];
    let currency = prop_oneof![Just("CNY"), Just("JPY"), Just("USD"), Just("EUR"), Just("XXX"), Just("cny")];
    let name = prop_oneof!["Cardholder [A-Z][0-9]{1,5}", Just("李雷".to_owned()), Just("Zoë Ångström".to_owned())];
    let payee = (name, "6222[0-9]{12}", prop_oneof![Just("BKCHCNBJ"), Just("BAD BANK")]);
    let fields = (id, kind(), merchant, amount(), currency, time(), proptest::option::of(amount()), payee, time());
    (fields, any::<u64>()).prop_map(|((id, kind, merchant, amount, ccy, time, fee, payee, original), order)| {
        let mut pairs = vec![
            format!(r#""id":"{id}""#),
            format!(r#""type":"{kind}""#),
            format!(r#""merchant_id":"{merchant}""#),
            format!(r#""amount":"{amount}""#),
            format!(r#""currency":"{ccy}""#),
            format!(r#""event_time":"{time}""#),
        ];
        pairs.extend(fee.map(|fee| format!(r#""fee":"{fee}""#)));
        if kind == "refund" || order % 7 == 0 {
            pairs.push(r#""original_transaction_id":"T1""#.to_owned());
            pairs.push(format!(r#""original_amount":"{amount}""#));
            pairs.push(format!(r#""original_time":"{original}""#));
            let (name, account, bank) = payee;
            pairs.push(format!(r#""payee":{{"name":"{name}","account":"{account}","bank":"{bank}"}}"#));
        }
        if kind == "refund_reversal" || order % 5 == 0 {
            pairs.push(r#""reverses":"R1""#.to_owned());
        }
        let n = pairs.len();
        pairs.swap(order as usize % n, (order >> 8) as usize % n);
        format!("{{{}}}", pairs.join(","))
    })
}

/// Bytes that change what a JSON text means.
const INTERESTING: &[u8] = b"\"\\{}[],: \t\n0-1eaZ\x00\x7f\x80\xc3\xff";

/// Ways to damage a line.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    /// The value of the n-th string replaced by a JSON text.
    Retype(usize, &'static str),
    /// A field added at the front.
    Prepend(&'static str),
    /// The n-th string's first character written as a `\u` escape.
    Escape(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop::sample::select(INTERESTING);
    let json =
        prop::sample::select(&["1", "1.50", "-0", "1e400", "true", "null", "[]", "[1,\"a\",{}]", "{}", "\"\""][..]);
    let field = prop::sample::select(
        &[
            r#""x":1.50,"#,
            r#""x":[1, 2.0],"#,
            r#""id":"R2","#,
            r#""name":"top","#,
            r#""payee":{"name":"N","account":"1","bank":"B"},"#,
            r#""z":{"a":{"b":[{"c":null}]}},"#,
            r#""ünï":"x","#,
        ][..],
    );
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), json).prop_map(|(n, v)| Mutation::Retype(n, v)),
        field.prop_map(Mutation::Prepend),
        any::<usize>().prop_map(Mutation::Escape),
    ]
}

/// Byte ranges of the string contents (between the quotes) of `line`, ignoring escapes.
fn strings(line: &[u8]) -> Vec<(usize, usize)> {
    let quotes: Vec<usize> = line.iter().enumerate().filter(|(_, &b)| b == b'"').map(|(i, _)| i).collect();
    quotes.chunks_exact(2).map(|q| (q[0] + 1, q[1])).collect()
}

fn apply(mut line: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = line.len().max(1);
    match *m {
        Mutation::Replace(at, b) if !line.is_empty() => line[at % len] = b,
        Mutation::Insert(at, b) => line.insert(at % (line.len() + 1), b),
        Mutation::Remove(at) if !line.is_empty() => {
            line.remove(at % len);
        }
        Mutation::Retype(n, json) => {
            let all = strings(&line);
            if let Some(&(start, end)) = all.get(n % all.len().max(1)) {
                line.splice(start - 1..end + 1, json.bytes());
            }
        }
        Mutation::Prepend(field) if line.first() == Some(&b'{') => {
            line.splice(1..1, field.bytes());
        }
        Mutation::Escape(n) => {
            let all = strings(&line);
            if let Some(&(start, end)) = all.get(n % all.len().max(1)) {
                if start < end && line[start].is_ascii_alphanumeric() {
                    let escaped = format!("\\u{:04x}", line[start]);
                    line.splice(start..start + 1, escaped.bytes());
                }
            }
        }
        _ => {}
    }
    line
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Generated lines, each damaged by up to three mutations, get the same answer both ways.
    #[test]
    fn fast_and_reference_parsers_agree(line in line(), mutations in prop::collection::vec(mutation(), 0..4)) {
        prop_assert!(scan::scan(line.as_bytes()).is_some(), "the generated shape takes the fast path: {line}");
        let bytes = mutations.iter().fold(line.into_bytes(), apply);
        if let Err(message) = differential_line(&bytes) {
            prop_assert!(false, "{}", message);
        }
    }
}

/// Every input of the fuzz target's committed corpus (seeds, and any input a fuzz run found
/// wrong once) is replayed here, so a fixed disagreement stays fixed.
#[test]
fn the_fuzz_corpus_gets_one_answer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/parse_differential");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("corpus file");
        differential_line(&bytes).unwrap_or_else(|m| panic!("{m}"));
        replayed += 1;
    }
    assert!(replayed >= 30, "the corpus is there ({replayed} files)");
}

#[test]
fn the_fast_path_takes_the_common_shape_and_leaves_the_rest() {
    let plain = br#" {"id":"C1", "type":"capture","merchant_id":"M1","amount":"1.00","currency":"CNY","event_time":"2026-11-21T10:00:00Z"} "#;
    assert!(scan::scan(plain).is_some());
    let others: &[&[u8]] = &[
        br#"{"id":"C\u0031","type":"capture"}"#,
        br#"{"id":"C1","id":"C1"}"#,
        br#"{"id":"C1","extra":"x"}"#,
        br#"{"id":"C1","amount":1}"#,
        br#"{"id":"C1"} x"#,
        br#"{}"#,
        br#"{"name":"top-level payee part"}"#,
        br#"{"payee":{"name":"N","id":"x"}}"#,
        b"{\"id\":\"C\x011\"}",
        b"{\"id\":\"C\xff\"}",
    ];
    for other in others {
        assert!(scan::scan(other).is_none(), "{}", String::from_utf8_lossy(other));
        differential_line(other).unwrap_or_else(|m| panic!("{m}"));
    }
}

#[test]
fn unknown_numbers_are_fingerprinted_as_written_never_through_a_float() {
    let with = |x: &str| {
        let line = format!(r#"{{"id":"C1","x":{x},"type":"capture"}}"#);
        match parse(line.as_bytes()) {
            Parsed::Invalid { identity: Some(identity), .. } => identity.fingerprint,
            other => panic!("{other:?}"),
        }
    };
    assert_ne!(with("1.50"), with("1.5"), "1.50 is not re-formatted as 1.5");
    assert_ne!(with("1e2"), with("100"));
    assert_ne!(with("12345678901234567890123"), with("12345678901234567000000"), "no f64 rounding");
    assert_eq!(with("[1, 2.50]"), with("[1,2.50]"), "whitespace is not content");
    assert_ne!(with("[1,2.50]"), with("[1,2.5]"));
}

#[test]
fn the_fingerprint_encoding_is_pinned() {
    // The fingerprint is stored in checkpoints and compared across releases: a change of this
    // value changes which re-deliveries are recognised, so it must be a deliberate one.
    let line = br#"{"id":"R1","type":"refund","merchant_id":"M1","amount":"12.30","currency":"CNY","event_time":"2026-11-21T10:00:00+08:00","original_transaction_id":"T1","original_amount":"100.00","original_time":"2026-11-20T09:00:00+08:00","payee":{"name":"Li Lei","account":"6222021234567890","bank":"BKCHCNBJ"},"x":[1,{"b":true,"a":null}]}"#;
    let Parsed::Valid { fingerprint, .. } = parse_reference(line) else { panic!("valid") };
    assert_eq!(format!("{fingerprint:032x}"), PINNED);
}

const PINNED: &str = "b7a9e7770fccdcd7dfeaf107761a0598";

#[test]
fn deep_nesting_is_refused_before_the_tree_is_built() {
    let deep = format!(r#"{{"id":"C1","x":{}1{}}}"#, "[".repeat(40), "]".repeat(40));
    match parse(deep.as_bytes()) {
        Parsed::Invalid { reject, identity: None } => {
            assert_eq!(reject.reason, RejectReason::Malformed);
            assert!(reject.message.contains("nest 41 deep"), "{}", reject.message);
        }
        other => panic!("{other:?}"),
    }
}
