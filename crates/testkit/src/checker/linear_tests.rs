//! Tests of `linear.rs`: hand-made histories, then generated ones with and
//! without planted violations.

use super::*;
use crate::checker::fixtures::{cas, delete, read, write, Modify};
use crate::checker::gen::{self, Params, Rng};
use crate::checker::plant;

fn verdict(ops: &[Operation]) -> Verdict {
    let report = check(ops, &LinearConfig::default());
    assert!(report.keys.len() <= 1, "one key expected");
    report
        .keys
        .into_iter()
        .next()
        .map_or(Verdict::Ok, |k| k.verdict)
}

fn ok(ops: &[Operation]) {
    assert_eq!(verdict(ops), Verdict::Ok, "{ops:#?}");
}

fn violation(ops: &[Operation]) -> Violation {
    match verdict(ops) {
        Verdict::Violation(v) => *v,
        other => panic!("expected a violation, got {other:?} for {ops:#?}"),
    }
}

#[test]
fn empty_and_sequential_histories_are_ok() {
    ok(&[]);
    ok(&[
        read(0, None, 0, 1),
        write(0, "a", 2, 3),
        read(1, Some("a"), 4, 5),
        delete(0, 6, 7),
        read(1, None, 8, 9),
    ]);
}

#[test]
fn stale_read() {
    let v = violation(&[
        write(0, "a", 0, 10),
        write(0, "b", 20, 30),
        read(1, Some("a"), 40, 50),
    ]);
    assert_eq!(v.blocked, read(1, Some("a"), 40, 50));
    assert_eq!(v.state, Some("b".into()));
    assert_eq!(v.prefix.len(), 2);
    let text = v.to_string();
    assert!(text.contains("cannot place: p1 k read -> a"), "{text}");
}

#[test]
fn read_absent_after_acknowledged_write() {
    violation(&[write(0, "a", 0, 10), read(1, None, 20, 30)]);
}

#[test]
fn lost_write() {
    // b was acknowledged, then every later read sees a.
    violation(&[
        write(0, "a", 0, 10),
        write(1, "b", 20, 30),
        read(2, Some("a"), 35, 40),
        read(0, Some("a"), 45, 50),
    ]);
}

#[test]
fn reordered_writes() {
    // a then b in real time, but readers saw b then a.
    violation(&[
        write(0, "a", 0, 10),
        write(0, "b", 11, 20),
        read(1, Some("b"), 21, 30),
        read(2, Some("a"), 31, 40),
    ]);
}

#[test]
fn duplicate_apply_resurrects_a_value() {
    violation(&[
        write(0, "a", 0, 10),
        read(1, Some("a"), 11, 12),
        write(0, "b", 13, 20),
        read(1, Some("b"), 21, 22),
        read(1, Some("a"), 23, 24),
    ]);
}

#[test]
fn concurrent_ops_linearize_in_a_non_obvious_order() {
    // a is invoked first yet takes effect after b and after the read of b.
    ok(&[
        write(0, "a", 0, 100),
        write(1, "b", 10, 20),
        read(2, Some("b"), 30, 40),
        read(3, Some("a"), 50, 60),
    ]);
    // Two reads overlapping two writes see them in opposite orders: no single order fits.
    violation(&[
        write(0, "a", 0, 50),
        write(1, "b", 0, 50),
        read(2, Some("a"), 60, 70),
        read(3, Some("b"), 60, 70),
        read(2, Some("a"), 80, 90),
    ]);
    // A read overlapping a write may see the old or the new value.
    ok(&[
        write(0, "a", 0, 5),
        write(1, "b", 10, 40),
        read(2, Some("b"), 12, 20),
        read(3, Some("b"), 21, 30),
        read(4, Some("b"), 41, 50),
    ]);
}

#[test]
fn info_write_that_took_effect() {
    ok(&[
        write(0, "a", 0, 10),
        write(1, "b", 20, 30).info(),
        read(2, Some("b"), 40, 50),
    ]);
    // Even long after a later read saw the old value.
    ok(&[
        write(0, "a", 0, 10),
        write(1, "b", 20, 30).info(),
        read(2, Some("a"), 40, 50),
        read(2, Some("b"), 60, 70),
    ]);
}

#[test]
fn info_write_that_did_not_take_effect() {
    ok(&[
        write(0, "a", 0, 10),
        write(1, "b", 20, 30).info(),
        read(2, Some("a"), 40, 50),
    ]);
}

#[test]
fn info_write_takes_effect_once() {
    violation(&[
        write(0, "a", 0, 10),
        write(1, "b", 20, 30).info(),
        read(2, Some("b"), 40, 50),
        read(2, Some("a"), 60, 70),
    ]);
}

#[test]
fn info_write_cannot_precede_its_invoke() {
    violation(&[
        write(0, "a", 0, 10),
        read(2, Some("b"), 20, 30),
        write(1, "b", 40, 50).info(),
    ]);
}

#[test]
fn failed_write_did_not_happen() {
    ok(&[write(0, "a", 0, 10).fail(), read(1, None, 20, 30)]);
    violation(&[write(0, "a", 0, 10).fail(), read(1, Some("a"), 20, 30)]);
}

#[test]
fn failed_and_info_reads_are_ignored() {
    ok(&[
        write(0, "a", 0, 10),
        read(1, Some("zzz"), 20, 30).fail(),
        read(1, Some("zzz"), 40, 50).info(),
    ]);
}

#[test]
fn eventual_reads_are_left_to_the_eventual_checker() {
    ok(&[write(0, "a", 0, 10), read(1, None, 20, 30).eventual()]);
}

#[test]
fn eventual_writes_may_take_effect_late_or_never() {
    ok(&[
        write(0, "a", 0, 10).eventual(),
        read(1, None, 20, 30),
        read(1, Some("a"), 40, 50),
    ]);
}

#[test]
fn cas_success_and_failure() {
    ok(&[
        write(0, "a", 0, 10),
        cas(1, "a", "b", 20, 30),
        cas(2, "a", "c", 40, 50).fail(),
        read(0, Some("b"), 60, 70),
    ]);
    // A cas that matched a value the register no longer held.
    violation(&[
        write(0, "a", 0, 10),
        write(0, "b", 20, 30),
        cas(1, "a", "c", 40, 50),
    ]);
    // A failed cas changed nothing.
    violation(&[
        write(0, "a", 0, 10),
        cas(1, "a", "b", 20, 30).fail(),
        read(0, Some("b"), 40, 50),
    ]);
}

#[test]
fn info_cas_happens_only_if_it_matched() {
    ok(&[
        write(0, "a", 0, 10),
        cas(1, "a", "b", 20, 30).info(),
        read(0, Some("b"), 40, 50),
    ]);
    ok(&[
        write(0, "a", 0, 10),
        cas(1, "a", "b", 20, 30).info(),
        read(0, Some("a"), 40, 50),
    ]);
    violation(&[
        write(0, "x", 0, 10),
        cas(1, "a", "b", 20, 30).info(),
        read(0, Some("b"), 40, 50),
    ]);
}

#[test]
fn delete_then_stale_read() {
    violation(&[
        write(0, "a", 0, 10),
        delete(1, 20, 30),
        read(2, Some("a"), 40, 50),
    ]);
}

#[test]
fn keys_are_checked_independently() {
    let report = check(
        &[
            write(0, "a", 0, 10).on("x"),
            read(1, Some("a"), 20, 30).on("y"),
            read(1, Some("a"), 40, 50).on("x"),
        ],
        &LinearConfig::default(),
    );
    let verdicts: Vec<(&str, bool)> = report
        .keys
        .iter()
        .map(|k| (k.key.as_str(), k.verdict == Verdict::Ok))
        .collect();
    assert_eq!(verdicts, [("x", true), ("y", false)]);
    assert!(!report.is_ok());
    assert_eq!(report.violations().count(), 1);
}

#[test]
fn exhausted_budget_is_unknown_never_ok() {
    let ops = [
        write(0, "a", 0, 10),
        write(1, "b", 0, 10),
        read(2, Some("a"), 20, 30),
    ];
    let tight = LinearConfig {
        max_steps: 2,
        threads: 1,
    };
    let report = check(&ops, &tight);
    assert_eq!(report.keys[0].verdict, Verdict::Unknown);
    assert!(!report.is_ok());
    assert_eq!(report.unknown().collect::<Vec<_>>(), ["k"]);
}

fn params(seed: u64) -> Params {
    Params {
        processes: 6 + (seed % 5) as usize,
        ops: 200 + (seed % 7) as usize * 30,
        keys: 1 + (seed % 3) as usize,
        nodes: 3,
        info_pct: 5 + seed % 10,
        eventual_pct: seed % 20,
    }
}

fn assert_linearizable(seed: u64, ops: &[Operation]) {
    let report = check(ops, &LinearConfig::default());
    for k in &report.keys {
        assert_eq!(k.verdict, Verdict::Ok, "seed {seed} key {}", k.key);
    }
}

#[test]
fn generated_histories_are_linearizable() {
    for seed in 0..60 {
        assert_linearizable(seed, &gen::generate(seed, params(seed)));
    }
}

#[test]
fn generated_large_history_is_linearizable() {
    let p = Params {
        processes: 10,
        ops: 600,
        keys: 1,
        nodes: 3,
        info_pct: 8,
        eventual_pct: 0,
    };
    assert_linearizable(1000, &gen::generate(1000, p));
}

type Planter = fn(&[Operation], &mut Rng) -> Option<Vec<Operation>>;

fn planters() -> [(&'static str, Planter); 6] {
    [
        ("stale read", plant::plant_stale_read),
        ("future read", plant::plant_future_read),
        ("dropped write", |o, r| plant::plant_lost_write(o, r, true)),
        ("failed write seen", |o, r| {
            plant::plant_lost_write(o, r, false)
        }),
        ("bad cas", plant::plant_bad_cas),
        ("phantom", |o, r| plant::plant_phantom(o, r, false)),
    ]
}

#[test]
fn planted_violations_are_all_found() {
    for (name, plant) in planters() {
        let mut planted = 0;
        for seed in 0..40 {
            let ops = gen::generate(seed, params(seed));
            let mut rng = Rng::new(seed ^ 0xABCD);
            let Some(bad) = plant(&ops, &mut rng) else {
                continue;
            };
            planted += 1;
            let report = check(&bad, &LinearConfig::default());
            assert_eq!(
                report.violations().count(),
                1,
                "{name}, seed {seed}: {:?}",
                report.keys
            );
        }
        assert!(planted >= 20, "{name}: only {planted} sites");
    }
}
