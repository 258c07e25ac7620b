//! Scale-out: a second instance joins the group mid-stream, takes partitions over from the
//! first through the shared state directory, then leaves and hands them back.

use std::time::Duration;

use super::common::broker::Tansu;
use super::common::daemon::{produce_lines, Deployment};
use super::{assert_same_outcome, phased_workload, stop, wait_settled, wait_until, PAST};

#[test]
fn a_second_instance_joining_and_leaving_mid_stream_changes_nothing() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = phased_workload(&broker.addr, dir.path(), "rb", 30_000, 31);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();

    let shared = Deployment::new(dir.path(), "rb", &broker.addr, "rb", PAST, "");
    produce_lines(&broker.addr, "rb", &lines[..10_000]);
    let first = shared.start("a");
    wait_until("phase 1 netted", Duration::from_secs(120), || shared.accounting().0 >= 10_000);

    let second = shared.start("b");
    let owns_some = |tag: &str| {
        let log = std::fs::read_to_string(dir.path().join(format!("rb-{tag}.log"))).unwrap_or_default();
        log.lines().rev().find(|l| l.contains("partitions assigned")).is_some_and(|l| !l.contains("partitions={}"))
    };
    wait_until("the second instance owns partitions", Duration::from_secs(60), || owns_some("b"));
    produce_lines(&broker.addr, "rb", &lines[10_000..20_000]);
    wait_until("phase 2 netted", Duration::from_secs(120), || shared.accounting().0 >= 20_000);

    stop(&shared, "b", second);
    produce_lines(&broker.addr, "rb", &lines[20_000..]);

    let reference = Deployment::new(dir.path(), "rbref", &broker.addr, "rb", PAST, "");
    let undisturbed = reference.start("run");
    wait_settled(&[&shared, &reference], lines.len() as u64);
    stop(&shared, "a", first);
    stop(&reference, "run", undisturbed);
    assert_same_outcome(&broker.addr, &shared, &reference);
}
