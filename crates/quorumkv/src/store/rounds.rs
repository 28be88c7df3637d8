//! Coalescing read-index rounds: strong reads that arrive while a round is in
//! flight wait for the next one and share it, so N concurrent reads cost one
//! quorum round trip instead of N. A read is only ever served by a round that
//! started after it arrived, which is what linearizability asks.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;

/// Shares each round's result `R` among the calls that joined it.
pub struct Rounds<R> {
    tx: mpsc::UnboundedSender<oneshot::Sender<R>>,
}

impl<R: Clone + Send + 'static> Rounds<R> {
    /// `round` runs one round; `None` means the store is gone (the task ends).
    pub fn start<F, Fut>(round: F) -> Self
    where
        F: Fn() -> Option<Fut> + Send + 'static,
        Fut: Future<Output = R> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<R>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiters = vec![first];
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                let Some(fut) = round() else { return };
                let result = fut.await;
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        Rounds { tx }
    }

    /// The result of a round that started after this call.
    pub async fn join(&self) -> Result<R, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_joins_share_rounds_that_start_after_them() {
        let started = Arc::new(AtomicU64::new(0));
        let s = started.clone();
        let rounds = Arc::new(Rounds::start(move || {
            let s = s.clone();
            Some(async move {
                let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                n
            })
        }));
        let joins: Vec<_> = (0..50)
            .map(|_| {
                let r = rounds.clone();
                tokio::spawn(async move { r.join().await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for j in joins {
            seen.push(j.await.unwrap());
        }
        let rounds_run = started.load(Ordering::SeqCst);
        assert!(
            rounds_run <= 3,
            "50 concurrent reads took {rounds_run} rounds"
        );
        // A join made after a round finished gets a later round.
        let before = started.load(Ordering::SeqCst);
        assert!(rounds.join().await.unwrap() > before);
        assert!(seen.iter().all(|&n| n >= 1));
    }
}
