//! The bank's invariants, checked on what the store holds (accounts and
//! transfer records, read at one index) against what each client was told.
//! Pure, so the checks themselves are tested on histories with planted bugs.

use std::collections::BTreeMap;

use crate::bank::{account, BankConfig, Outcome, Transfer, RECORDS};
use crate::wire::ListItem;

/// Returns the violations and the total of all balances.
pub fn check(
    cfg: &BankConfig,
    accounts: &[ListItem],
    records: &[ListItem],
    transfers: &[Transfer],
) -> (Vec<String>, i64) {
    let mut v = Vec::new();

    let mut balances = BTreeMap::new();
    for item in accounts {
        match item.value.parse::<i64>() {
            Ok(b) => drop(balances.insert(item.key.clone(), b)),
            Err(_) => v.push(format!(
                "{} holds {:?}, not a balance",
                item.key, item.value
            )),
        }
    }
    if balances.len() != cfg.accounts {
        v.push(format!(
            "{} accounts, want {}",
            balances.len(),
            cfg.accounts
        ));
    }
    let total: i64 = balances.values().sum();
    let want_total = cfg.initial_balance * cfg.accounts as i64;
    if total != want_total {
        v.push(format!("total is {total}, want {want_total}"));
    }
    for (key, b) in &balances {
        if *b < 0 {
            v.push(format!("{key} is negative: {b}"));
        }
    }

    // Records by transfer, and the balances they imply.
    let mut by_transfer: BTreeMap<(usize, usize), Vec<(u32, String)>> = BTreeMap::new();
    let mut implied: BTreeMap<String, i64> = (0..cfg.accounts)
        .map(|i| (account(i), cfg.initial_balance))
        .collect();
    for item in records {
        let Some((c, s, attempt, from, to, amount)) = parse_record(item) else {
            v.push(format!("malformed record {} = {:?}", item.key, item.value));
            continue;
        };
        *implied.entry(account(from)).or_default() -= amount;
        *implied.entry(account(to)).or_default() += amount;
        by_transfer
            .entry((c, s))
            .or_default()
            .push((attempt, item.value.clone()));
    }
    for (key, want) in &implied {
        let have = balances.get(key).copied().unwrap_or_default();
        if have != *want {
            v.push(format!(
                "{key} is {have}, but its start and the transfers recorded make {want}"
            ));
        }
    }

    let mut issued = BTreeMap::new();
    for t in transfers {
        issued.insert((t.client, t.seq), t);
        let found = by_transfer.get(&(t.client, t.seq)).cloned();
        let found = found.unwrap_or_default();
        let id = format!("transfer {}/{}", t.client, t.seq);
        let body = format!("{} {} {}", t.from, t.to, t.amount);
        if found.len() > 1 {
            v.push(format!("{id} applied {} times: {found:?}", found.len()));
            continue;
        }
        match (t.outcome, found.first()) {
            (Outcome::Applied { attempt, index }, None) => v.push(format!(
                "{id} acknowledged (attempt {attempt}, index {index}) but not in the store"
            )),
            (Outcome::Applied { attempt, .. }, Some((a, b))) if *a != attempt || *b != body => v
                .push(format!(
                "{id} acknowledged as attempt {attempt} ({body}) but stored as attempt {a} ({b})"
            )),
            (Outcome::Declined | Outcome::Abandoned, Some(found)) => v.push(format!(
                "{id} was reported {:?} but applied: {found:?}",
                t.outcome
            )),
            (Outcome::Unknown { attempt }, _) => v.push(format!(
                "{id}: attempt {attempt} got no definite answer before the deadline"
            )),
            _ => {}
        }
    }
    for (c, s) in by_transfer.keys() {
        if !issued.contains_key(&(*c, *s)) {
            v.push(format!(
                "record of transfer {c}/{s}, which was never issued"
            ));
        }
    }
    (v, total)
}

/// `bank/xfer/<client>/<seq>/<attempt>` = `"<from> <to> <amount>"`.
fn parse_record(item: &ListItem) -> Option<(usize, usize, u32, usize, usize, i64)> {
    let rest = item.key.strip_prefix(RECORDS)?;
    let mut k = rest.split('/');
    let (c, s, a) = (k.next()?.parse().ok()?, k.next()?.parse().ok()?, k.next()?);
    let mut val = item.value.split(' ');
    let from = val.next()?.parse().ok()?;
    let to = val.next()?.parse().ok()?;
    let amount = val.next()?.parse().ok()?;
    Some((c, s, a.parse().ok()?, from, to, amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::record_key;

    fn cfg() -> BankConfig {
        BankConfig {
            accounts: 3,
            initial_balance: 100,
            ..BankConfig::default()
        }
    }

    fn item(key: String, value: String) -> ListItem {
        ListItem {
            key,
            value,
            encoding: "utf8".into(),
        }
    }

    fn transfer(seq: usize, from: usize, to: usize, amount: i64, outcome: Outcome) -> Transfer {
        Transfer {
            client: 0,
            seq,
            from,
            to,
            amount,
            outcome,
        }
    }

    fn applied(attempt: u32) -> Outcome {
        Outcome::Applied { attempt, index: 9 }
    }

    /// The store after applying `(seq, attempt, from, to, amount)` records.
    fn store(applied: &[(usize, u32, usize, usize, i64)]) -> (Vec<ListItem>, Vec<ListItem>) {
        let mut balances = [100i64; 3];
        let mut records = Vec::new();
        for &(seq, attempt, from, to, amount) in applied {
            balances[from] -= amount;
            balances[to] += amount;
            let value = format!("{from} {to} {amount}");
            records.push(item(record_key(0, seq, attempt), value));
        }
        let accounts = (0..3).map(|i| item(account(i), balances[i].to_string()));
        (accounts.collect(), records)
    }

    fn violations(store: (Vec<ListItem>, Vec<ListItem>), transfers: &[Transfer]) -> Vec<String> {
        check(&cfg(), &store.0, &store.1, transfers).0
    }

    #[test]
    fn a_correct_history_passes() {
        let transfers = [
            transfer(0, 0, 1, 30, applied(0)),
            transfer(1, 1, 2, 50, applied(2)),
            transfer(2, 2, 0, 500, Outcome::Declined),
            transfer(3, 0, 2, 10, Outcome::Abandoned),
        ];
        let s = store(&[(0, 0, 0, 1, 30), (1, 2, 1, 2, 50)]);
        assert_eq!(violations(s, &transfers), Vec::<String>::new());
    }

    #[test]
    fn a_transfer_applied_twice_is_caught() {
        // A lost answer retried without its key: the retry lost the race
        // (mod index moved), so the next attempt moved the money again.
        let transfers = [transfer(0, 0, 1, 30, applied(1))];
        let v = violations(store(&[(0, 0, 0, 1, 30), (0, 1, 0, 1, 30)]), &transfers);
        assert!(v.iter().any(|v| v.contains("applied 2 times")), "{v:?}");
    }

    #[test]
    fn a_lost_acknowledged_transfer_is_caught() {
        let transfers = [transfer(0, 0, 1, 30, applied(0))];
        let v = violations(store(&[]), &transfers);
        assert!(v.iter().any(|v| v.contains("not in the store")), "{v:?}");
    }

    #[test]
    fn a_transfer_applied_though_reported_failed_is_caught() {
        let transfers = [transfer(0, 0, 1, 30, Outcome::Declined)];
        let v = violations(store(&[(0, 0, 0, 1, 30)]), &transfers);
        assert!(v.iter().any(|v| v.contains("but applied")), "{v:?}");
    }

    #[test]
    fn money_moved_without_a_record_is_caught() {
        let transfers = [transfer(0, 0, 1, 30, applied(0))];
        let (mut accounts, records) = store(&[(0, 0, 0, 1, 30)]);
        accounts[2].value = "99".into();
        let v = violations((accounts, records), &transfers);
        assert!(v.iter().any(|v| v.starts_with("total is 299")), "{v:?}");
        assert!(v.iter().any(|v| v.contains("bank/acct/002 is 99")), "{v:?}");
    }

    #[test]
    fn an_overdraft_is_caught() {
        let transfers = [transfer(0, 0, 1, 130, applied(0))];
        let v = violations(store(&[(0, 0, 0, 1, 130)]), &transfers);
        assert!(v.iter().any(|v| v.contains("negative")), "{v:?}");
    }

    #[test]
    fn records_round_trip() {
        let item = ListItem {
            key: record_key(3, 17, 2),
            value: "4 7 120".into(),
            encoding: "utf8".into(),
        };
        assert_eq!(parse_record(&item), Some((3, 17, 2, 4, 7, 120)));
    }
}
