//! The booking's invariants, checked on what the store holds (seats and
//! tickets, read at one index) against what each buyer was told. Pure, so
//! the checks themselves are tested on histories with planted bugs.

use std::collections::BTreeMap;

use crate::booking::{buyer, seat, ticket, Answer, BookingConfig, Buyer, Mode, SEATS};
use crate::wire::ListItem;

/// Returns the violations and the number of seats sold.
pub fn check(
    cfg: &BookingConfig,
    seats: &[ListItem],
    tickets: &[ListItem],
    buyers: &[Buyer],
) -> (Vec<String>, usize) {
    let mut v = Vec::new();
    let held: BTreeMap<String, String> = seats
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();
    let tickets_held: BTreeMap<String, String> = tickets
        .iter()
        .map(|i| (i.key.clone(), i.value.clone()))
        .collect();

    let mut told_yes: BTreeMap<usize, usize> = BTreeMap::new();
    for b in buyers {
        let name = buyer(b.id);
        match b.answer {
            Answer::Yes { seat: n, .. } => {
                if let Some(other) = told_yes.insert(n, b.id) {
                    v.push(format!(
                        "seat {n} sold twice: to {} and {name}",
                        buyer(other)
                    ));
                }
                let has = held.get(&seat(n));
                if has != Some(&name) {
                    v.push(format!("{name} was told seat {n}, which holds {has:?}"));
                }
            }
            Answer::No => {}
            Answer::Unknown { seat: n } => v.push(format!(
                "{name}: no definite answer for seat {n} before the deadline"
            )),
        }
        let want_ticket = match (b.mode, b.answer) {
            (Mode::Txn, Answer::Yes { seat: n, .. }) => Some(n.to_string()),
            _ => None,
        };
        let has_ticket = tickets_held.get(&ticket(b.id)).cloned();
        let unknown = matches!(b.answer, Answer::Unknown { .. });
        if has_ticket != want_ticket && !unknown {
            v.push(format!(
                "{name} ({:?}, told {:?}) has ticket {has_ticket:?}",
                b.mode, b.answer
            ));
        }
    }
    for key in tickets_held.keys() {
        if !buyers.iter().any(|b| ticket(b.id) == *key) {
            v.push(format!("ticket {key} of no buyer"));
        }
    }
    let mut holders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in &held {
        holders
            .entry(value.as_str())
            .or_default()
            .push(key.as_str());
        let n = key
            .strip_prefix(SEATS)
            .and_then(|n| n.parse::<usize>().ok());
        let told = n.and_then(|n| told_yes.get(&n)).map(|&b| buyer(b));
        if told.as_deref() != Some(value.as_str()) {
            v.push(format!(
                "{key} is held by {value}, but the buyer told yes for it is {told:?}"
            ));
        }
    }
    for (who, keys) in &holders {
        if keys.len() > 1 {
            v.push(format!("{who} holds {} seats: {keys:?}", keys.len()));
        }
    }
    if held.len() != cfg.seats {
        v.push(format!(
            "{} of {} seats sold, with {} buyers",
            held.len(),
            cfg.seats,
            cfg.buyers
        ));
    }
    let sold = held.len();
    (v, sold)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BookingConfig {
        BookingConfig {
            seats: 2,
            buyers: 4,
            ..BookingConfig::default()
        }
    }

    fn item(key: String, value: String) -> ListItem {
        ListItem {
            key,
            value,
            encoding: "utf8".into(),
        }
    }

    fn yes(seat: usize) -> Answer {
        Answer::Yes {
            seat,
            by_reading: false,
        }
    }

    /// Buyers 0 (put) and 1 (txn) got seats 1 and 0; 2 and 3 were told no.
    fn history() -> (Vec<ListItem>, Vec<ListItem>, Vec<Buyer>) {
        let b = |id, answer| Buyer {
            id,
            mode: if id % 2 == 0 {
                Mode::PutIfAbsent
            } else {
                Mode::Txn
            },
            answer,
            tried: 1,
        };
        let buyers = vec![
            b(0, yes(1)),
            b(1, yes(0)),
            b(2, Answer::No),
            b(3, Answer::No),
        ];
        let seats = vec![item(seat(0), buyer(1)), item(seat(1), buyer(0))];
        let tickets = vec![item(ticket(1), "0".into())];
        (seats, tickets, buyers)
    }

    fn violations(h: &(Vec<ListItem>, Vec<ListItem>, Vec<Buyer>)) -> Vec<String> {
        check(&cfg(), &h.0, &h.1, &h.2).0
    }

    #[test]
    fn a_correct_history_passes() {
        assert_eq!(violations(&history()), Vec::<String>::new());
    }

    #[test]
    fn a_seat_sold_twice_is_caught() {
        let mut h = history();
        h.2[2].answer = yes(1);
        let v = violations(&h);
        assert!(v.iter().any(|v| v.contains("seat 1 sold twice")), "{v:?}");
        assert!(
            v.iter().any(|v| v.contains("buyer-002 was told seat 1")),
            "{v:?}"
        );
    }

    #[test]
    fn a_buyer_told_no_who_holds_a_seat_is_caught() {
        let mut h = history();
        h.0[1].value = buyer(2);
        let v = violations(&h);
        assert!(v.iter().any(|v| v.contains("held by buyer-002")), "{v:?}");
        assert!(
            v.iter().any(|v| v.contains("buyer-000 was told seat 1")),
            "{v:?}"
        );
    }

    #[test]
    fn an_unsold_seat_and_a_stray_ticket_are_caught() {
        let mut h = history();
        h.0.pop();
        h.2[0].answer = Answer::No;
        h.1.push(item(ticket(3), "1".into()));
        let v = violations(&h);
        assert!(v.iter().any(|v| v.contains("1 of 2 seats sold")), "{v:?}");
        assert!(
            v.iter()
                .any(|v| v.contains("buyer-003 (Txn, told No) has ticket")),
            "{v:?}"
        );
    }
}
