//! Tests of `wgl.rs`: small cases, and agreement with a brute-force search.

use super::*;

fn op(call: u64, ret: Option<u64>, step: Step) -> Call {
    Call { call, ret, step }
}

fn linearizable(ops: &[Call]) -> bool {
    match search(ops, 1_000_000) {
        Search::Linearizable { .. } => true,
        Search::Violation { .. } => false,
        Search::Exhausted { .. } => panic!("budget"),
    }
}

#[test]
fn model_steps() {
    assert_eq!(Step::Read(None).apply(None), Some(None));
    assert_eq!(Step::Read(Some(1)).apply(None), None);
    assert_eq!(Step::Set(Some(2)).apply(Some(1)), Some(Some(2)));
    let cas = Step::Cas {
        expected: 1,
        new: 2,
    };
    assert_eq!(cas.apply(Some(1)), Some(Some(2)));
    assert_eq!(cas.apply(None), None);
}

#[test]
fn empty_is_linearizable() {
    assert_eq!(search(&[], 10), Search::Linearizable { steps: 0 });
}

#[test]
fn later_invoked_write_can_linearize_first() {
    let ops = [
        op(0, Some(100), Step::Set(Some(1))),
        op(10, Some(20), Step::Set(Some(2))),
        op(30, Some(40), Step::Read(Some(2))),
        op(50, Some(60), Step::Read(Some(1))),
    ];
    assert!(linearizable(&ops));
}

#[test]
fn violation_reports_longest_prefix() {
    let ops = [
        op(0, Some(1), Step::Set(Some(1))),
        op(2, Some(3), Step::Set(Some(2))),
        op(4, Some(5), Step::Read(Some(1))),
    ];
    match search(&ops, 1000) {
        Search::Violation { prefix, .. } => assert_eq!(prefix, vec![0, 1]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn optional_ops_may_never_happen() {
    let ops = [
        op(
            0,
            None,
            Step::Cas {
                expected: 9,
                new: 1,
            },
        ),
        op(5, Some(6), Step::Read(None)),
    ];
    assert!(linearizable(&ops));
}

#[test]
fn budget_exhaustion_is_reported() {
    let ops = [
        op(0, Some(10), Step::Set(Some(1))),
        op(0, Some(10), Step::Read(Some(1))),
    ];
    assert_eq!(search(&ops, 1), Search::Exhausted { steps: 1 });
}

/// Tries every order: an operation may go next if every required one that
/// returned before it was called has gone; optional ones may be left out.
fn brute_force(ops: &[Call], placed: &mut [bool], state: State) -> bool {
    if (0..ops.len()).all(|i| placed[i] || ops[i].ret.is_none()) {
        return true;
    }
    for i in 0..ops.len() {
        let blocked = |j: usize| !placed[j] && ops[j].ret.is_some_and(|r| r < ops[i].call);
        if placed[i] || (0..ops.len()).any(blocked) {
            continue;
        }
        if let Some(next) = ops[i].step.apply(state) {
            placed[i] = true;
            let found = brute_force(ops, placed, next);
            placed[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

fn random_call(rng: &mut crate::checker::gen::Rng) -> Call {
    let mut value = || match rng.below(4) {
        0 => None,
        v => Some(v as u32),
    };
    let (a, b) = (value(), value());
    let step = match rng.below(4) {
        0 | 1 => Step::Read(a),
        2 => Step::Set(a),
        _ => Step::Cas {
            expected: a.unwrap_or(0),
            new: b.unwrap_or(1),
        },
    };
    let call = rng.below(20);
    let optional = !matches!(step, Step::Read(_)) && rng.percent(30);
    let ret = (!optional).then(|| call + 1 + rng.below(8));
    Call { call, ret, step }
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = crate::checker::gen::Rng::new(7);
    let mut seen = [0; 2];
    for case in 0..20_000 {
        let n = 1 + rng.below(8) as usize;
        let ops: Vec<Call> = (0..n).map(|_| random_call(&mut rng)).collect();
        let expected = brute_force(&ops, &mut vec![false; n], None);
        assert_eq!(linearizable(&ops), expected, "case {case}: {ops:?}");
        seen[usize::from(expected)] += 1;
    }
    assert!(seen[0] > 2000 && seen[1] > 2000, "{seen:?}");
}
