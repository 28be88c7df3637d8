//! Tests of `eventual.rs`: phantoms, index regressions, values that do not
//! match their index; generated histories with and without planted anomalies.

use super::*;
use crate::checker::fixtures::{cas, delete, read, write, Modify};
use crate::checker::gen::{self, Params, Rng};
use crate::checker::plant;

fn eread(process: u64, value: Option<&str>, call: u64, ret: u64) -> Operation {
    read(process, value, call, ret).eventual()
}

fn kinds(report: &EventualReport) -> Vec<&'static str> {
    report
        .anomalies
        .iter()
        .map(|a| match a {
            Anomaly::Phantom { .. } => "phantom",
            Anomaly::IndexRegression { .. } => "regression",
            Anomaly::WrongValue { .. } => "wrong value",
        })
        .collect()
}

#[test]
fn absent_and_written_values_are_no_phantoms() {
    let report = check(&[
        eread(0, None, 0, 1),
        write(1, "a", 2, 10).info(),
        eread(0, Some("a"), 5, 6),
    ]);
    assert_eq!(report.reads, 2);
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn phantoms() {
    let report = check(&[
        eread(0, Some("never"), 0, 1),
        eread(0, Some("later"), 2, 3),
        write(1, "later", 4, 5),
        write(1, "failed", 6, 7).fail(),
        eread(0, Some("failed"), 8, 9),
        write(1, "other key", 10, 11).on("x"),
        eread(0, Some("other key"), 12, 13),
    ]);
    assert_eq!(kinds(&report), ["phantom"; 4]);
}

#[test]
fn index_going_back_on_a_node() {
    let report = check(&[eread(0, None, 0, 1).at(1, 5), eread(0, None, 2, 3).at(1, 3)]);
    assert_eq!(kinds(&report), ["regression"]);
    assert!(report.anomalies[0].to_string().contains("node 1"));
    // Across processes, ordered by real time.
    let report = check(&[eread(0, None, 0, 1).at(1, 5), eread(1, None, 2, 3).at(1, 3)]);
    assert_eq!(kinds(&report), ["regression"]);
}

#[test]
fn index_may_differ_when_concurrent_or_on_other_nodes() {
    let report = check(&[
        eread(0, None, 0, 10).at(1, 5),
        eread(1, None, 5, 15).at(1, 3),
        eread(2, None, 20, 30).at(2, 1),
        eread(2, None, 40, 50).at(1, 5),
    ]);
    assert!(report.is_ok(), "{report:?}");
}

fn indexed_writes() -> Vec<Operation> {
    vec![
        write(0, "a", 0, 10).at(1, 5),
        write(0, "b", 20, 30).at(1, 8),
        delete(0, 40, 50).at(1, 9),
    ]
}

#[test]
fn value_matches_its_index() {
    let mut ops = indexed_writes();
    ops.extend([
        eread(1, None, 60, 61).at(2, 4),
        eread(1, Some("a"), 62, 63).at(2, 6),
        eread(2, Some("b"), 64, 65).at(3, 8),
        eread(2, None, 66, 67).at(3, 12),
    ]);
    let report = check(&ops);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.exact, report.skipped), (4, 0));
}

#[test]
fn value_that_does_not_match_its_index() {
    let mut ops = indexed_writes();
    ops.extend([
        eread(1, Some("b"), 60, 61).at(2, 6),
        eread(2, Some("a"), 62, 63).at(3, 10),
        eread(2, Some("a"), 64, 65).at(4, 4),
    ]);
    let report = check(&ops);
    assert_eq!(kinds(&report), ["wrong value"; 3]);
    match &report.anomalies[0] {
        Anomaly::WrongValue { allowed, .. } => assert_eq!(allowed, &[Some("a".into())]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_index_writes_make_reads_undecidable() {
    let mut ops = indexed_writes();
    ops.push(cas(3, "a", "c", 12, 13).info());
    ops.push(eread(1, Some("c"), 60, 61).at(2, 7));
    let report = check(&ops);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.exact, report.skipped), (0, 1));
    // Undecidable, yet "b" (certain at 8) is impossible at 7 either way.
    ops.push(eread(1, Some("b"), 62, 63).at(2, 7));
    let report = check(&ops);
    assert_eq!(kinds(&report), ["wrong value"]);
    assert_eq!(report.skipped, 2);
}

#[test]
fn unknown_index_writes_invoked_late_are_out_of_range() {
    let mut ops = indexed_writes();
    // Invoked after the delete at 9 was acknowledged: it lands above 9.
    ops.push(write(3, "c", 55, 56).info());
    ops.push(eread(1, None, 60, 61).at(2, 9));
    let report = check(&ops);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.exact, report.skipped), (1, 0));
}

#[test]
fn eventual_writes_with_an_index_may_or_may_not_have_happened() {
    let mut ops = indexed_writes();
    ops.push(write(3, "e", 11, 12).eventual().at(1, 6));
    ops.extend([
        eread(1, Some("e"), 60, 61).at(2, 6),
        eread(1, Some("e"), 62, 63).at(2, 7),
        eread(2, Some("a"), 64, 65).at(3, 7),
        eread(2, Some("a"), 66, 67).at(1, 5),
    ]);
    let report = check(&ops);
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.exact, report.skipped), (1, 3));
}

#[test]
fn reads_without_index_are_skipped() {
    let report = check(&[write(0, "a", 0, 1), eread(1, Some("a"), 2, 3)]);
    assert!(report.is_ok());
    assert_eq!((report.reads, report.exact, report.skipped), (1, 0, 1));
}

fn params(seed: u64) -> Params {
    Params {
        processes: 6 + (seed % 5) as usize,
        ops: 300,
        keys: 1 + (seed % 3) as usize,
        nodes: 3,
        info_pct: 3 + seed % 8,
        eventual_pct: 50,
    }
}

#[test]
fn generated_histories_have_no_anomalies() {
    let mut exact = 0;
    for seed in 0..60 {
        let report = check(&gen::generate(seed, params(seed)));
        assert!(report.is_ok(), "seed {seed}: {:?}", report.anomalies);
        exact += report.exact;
    }
    assert!(exact > 1000, "only {exact} reads decided exactly");
}

#[test]
fn planted_phantoms_are_found() {
    for seed in 0..40 {
        let ops = gen::generate(seed, params(seed));
        let Some(bad) = plant::plant_phantom(&ops, &mut Rng::new(seed), true) else {
            continue;
        };
        assert!(kinds(&check(&bad)).contains(&"phantom"), "seed {seed}");
    }
}

#[test]
fn planted_regressions_are_found() {
    let mut planted = 0;
    for seed in 0..40 {
        let ops = gen::generate(seed, params(seed));
        let Some((bad, i)) = plant::plant_regression(&ops, &mut Rng::new(seed)) else {
            continue;
        };
        planted += 1;
        let found = check(&bad)
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::IndexRegression { later, .. } if *later == bad[i]));
        assert!(found, "seed {seed}");
    }
    assert!(planted >= 30, "only {planted}");
}

#[test]
fn planted_wrong_values_are_found() {
    let mut planted = 0;
    for seed in 0..40 {
        let ops = gen::generate(seed, params(seed));
        let Some((bad, i)) = plant::plant_wrong_value(&ops, &mut Rng::new(seed)) else {
            continue;
        };
        planted += 1;
        let found = check(&bad)
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::WrongValue { read, .. } if *read == bad[i]));
        assert!(found, "seed {seed}");
    }
    assert!(planted >= 30, "only {planted}");
}
