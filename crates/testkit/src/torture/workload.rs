//! The clients: each strictly sequential, each request with a timeout and no
//! retry, each operation recorded as invoke then ok / fail / info.
//!
//! A register per key: strong reads, writes of unique values (`p<process>-<n>`),
//! deletes, and compare-and-set two ways: `PUT` with `If-Match: "<mod index>"`
//! of a value the client saw (a mod index names one write, and values are
//! unique, so it holds iff the register holds that value), or a transaction
//! whose compare is `value_eq`. Strong operations go to any node; eventual
//! reads go to a node other than the last leader seen. Keys rotate: every
//! `keys_per_window * ops_per_key` operations move to fresh keys, so no key
//! sees more than a few hundred operations and each key's search stays small.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checker::{ConsistencyLevel, OpKind, Phase, Record, Value};
use crate::drive::Rng;
use crate::torture::outcome::{classify, label, Answer, Completion, Kind};
use crate::torture::recorder::Recorder;
use crate::{Client, Compare, Error, NodeId, Op, Opts, Response, Txn, TxnAck};

/// Every key of a run starts with this (the final listing scans it).
pub const KEY_PREFIX: &str = "tk";

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// Timeout of every request; the operation is `info` past it.
    pub op_timeout: Duration,
    /// Keys in use at once.
    pub keys_per_window: u64,
    /// Operations per key (on average) before the window moves on.
    pub ops_per_key: u64,
    /// Count a write's `503 no_leader` as `info` instead of `fail`.
    pub no_leader_is_info: bool,
    /// Pause of a client after a `fail` or `info`, so a down node is not
    /// hammered with refused connections.
    pub pause_after_error: Duration,
    /// A planted bug, to show the checks catch it; `None` in real runs.
    pub canary: Option<Canary>,
}

/// Deliberate mistakes of the harness itself, for checking the checks: a
/// run with a canary must fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// "Strong" reads are sent as eventual reads (served from any replica,
    /// possibly stale) but recorded as strong: linearizability must fail.
    StaleReads,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 8,
            op_timeout: Duration::from_secs(3),
            keys_per_window: 4,
            ops_per_key: 100,
            no_leader_is_info: false,
            pause_after_error: Duration::from_millis(50),
            canary: None,
        }
    }
}

/// What the clients share.
pub struct Workload {
    config: WorkloadConfig,
    rec: Arc<Recorder>,
    /// Every node's base URL, in id order.
    nodes: Vec<(NodeId, String)>,
    ops: AtomicU64,
    /// A value each key was last seen holding, with its mod index: what a cas expects.
    known: Mutex<HashMap<String, (String, u64)>>,
    /// The leader named by the latest read (`X-Raft-Leader`); 0 = none.
    leader_hint: AtomicU64,
    /// Answers by operation: `"write 503 no_leader" -> 12`.
    tally: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

/// The operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Read,
    EventualRead,
    Write,
    Delete,
    CasIfMatch,
    CasTxn,
}

impl Choice {
    /// Percentages: reads 30, eventual reads 15, writes 28, deletes 5, cas 22.
    fn pick(rng: &mut Rng) -> Choice {
        match rng.below(100) {
            0..=29 => Choice::Read,
            30..=44 => Choice::EventualRead,
            45..=72 => Choice::Write,
            73..=77 => Choice::Delete,
            78..=89 => Choice::CasIfMatch,
            _ => Choice::CasTxn,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Choice::Read => "read",
            Choice::EventualRead => "eventual-read",
            Choice::Write => "write",
            Choice::Delete => "delete",
            Choice::CasIfMatch => "cas-if-match",
            Choice::CasTxn => "cas-txn",
        }
    }
}

impl Workload {
    pub fn new(config: WorkloadConfig, rec: Arc<Recorder>, nodes: Vec<(NodeId, String)>) -> Self {
        Workload {
            config,
            rec,
            nodes,
            ops: AtomicU64::new(0),
            known: Mutex::new(HashMap::new()),
            leader_hint: AtomicU64::new(0),
            tally: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// Asks every client to finish its current operation and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Operations started so far.
    pub fn started(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    pub fn tally(&self) -> BTreeMap<String, u64> {
        lock(&self.tally).clone()
    }

    /// Runs all clients until [`Workload::stop`]; `seed` makes their choices.
    pub async fn run(self: &Arc<Self>, seed: u64) -> Result<(), Error> {
        let mut tasks = Vec::new();
        for process in 0..self.config.clients as u64 {
            let me = self.clone();
            let http = Client::http(self.config.op_timeout)?;
            let clients: Vec<(NodeId, Client)> = self
                .nodes
                .iter()
                .map(|(id, url)| (*id, Client::with_http(http.clone(), url.clone())))
                .collect();
            let rng = Rng::new(seed ^ (process + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            tasks.push(tokio::spawn(async move {
                me.client(process, clients, rng).await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }

    /// One client: strictly sequential operations until stopped.
    async fn client(&self, process: u64, nodes: Vec<(NodeId, Client)>, mut rng: Rng) {
        let mut seq = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            seq += 1;
            let key = self.next_key(&mut rng);
            let mut choice = Choice::pick(&mut rng);
            let expected = self.known(&key);
            if matches!(choice, Choice::CasIfMatch | Choice::CasTxn) && expected.is_none() {
                choice = Choice::Write;
            }
            let (_, client) = match choice {
                Choice::EventualRead => self.follower(&nodes, &mut rng),
                _ => &nodes[rng.below(nodes.len() as u64) as usize],
            };
            let value = format!("p{process}-{seq}");
            let done = match choice {
                Choice::Read => self.read(process, client, &key, false).await,
                Choice::EventualRead => self.read(process, client, &key, true).await,
                Choice::Write => self.write(process, client, &key, value).await,
                Choice::Delete => self.delete(process, client, &key).await,
                Choice::CasIfMatch | Choice::CasTxn => {
                    let (old, index) = expected.unwrap_or_default();
                    let txn = choice == Choice::CasTxn;
                    self.cas(process, client, &key, old, index, value, txn)
                        .await
                }
            };
            self.count(format!("{} {}", choice.name(), done.1));
            if done.0 != Phase::Ok {
                tokio::time::sleep(self.config.pause_after_error).await;
            }
        }
    }

    /// The key of the next operation, in the current window.
    fn next_key(&self, rng: &mut Rng) -> String {
        let n = self.ops.fetch_add(1, Ordering::Relaxed);
        let per = self.config.keys_per_window.max(1);
        let window = n / (per * self.config.ops_per_key.max(1));
        format!("{KEY_PREFIX}{window:06}-{}", rng.below(per))
    }

    fn known(&self, key: &str) -> Option<(String, u64)> {
        lock(&self.known).get(key).cloned()
    }

    fn learn(&self, key: &str, state: Option<(String, u64)>) {
        let mut known = lock(&self.known);
        match state {
            Some(s) => known.insert(key.to_owned(), s),
            None => known.remove(key),
        };
    }

    /// A node other than the last leader seen, at random.
    fn follower<'a>(&self, nodes: &'a [(NodeId, Client)], rng: &mut Rng) -> &'a (NodeId, Client) {
        let hint = self.leader_hint.load(Ordering::Relaxed);
        let others: Vec<&(NodeId, Client)> = nodes.iter().filter(|(id, _)| *id != hint).collect();
        others[rng.below(others.len() as u64) as usize]
    }

    fn count(&self, what: String) {
        *lock(&self.tally).entry(what).or_default() += 1;
    }

    fn opts(&self) -> Opts {
        Opts::strong().timeout(self.config.op_timeout)
    }

    /// Records the completion of `invoke` from `answer`; returns its phase and label.
    fn complete(
        &self,
        invoke: &Record,
        answer: Result<&Response, &Error>,
        completion: Completion,
        fill: impl FnOnce(&mut Record),
    ) -> (Phase, String) {
        let label = match answer {
            Ok(r) => label(Answer::Response(r)),
            Err(e) => label(Answer::Transport(e)),
        };
        let mut done = Record::complete(invoke, completion.phase, 0);
        done.error = completion.why;
        if let Ok(r) = answer {
            done.served_by = r.served_by();
            done.index = r.raft_index();
        }
        if completion.phase == Phase::Ok {
            fill(&mut done);
        }
        self.rec.log(done);
        (completion.phase, label)
    }

    fn classify(&self, answer: Result<&Response, &Error>, kind: Kind) -> Completion {
        let answer = match answer {
            Ok(r) => Answer::Response(r),
            Err(e) => Answer::Transport(e),
        };
        classify(answer, kind, self.config.no_leader_is_info)
    }

    async fn read(
        &self,
        process: u64,
        client: &Client,
        key: &str,
        eventual: bool,
    ) -> (Phase, String) {
        let mut invoke = Record::invoke(process, OpKind::Read, key, 0);
        let mut opts = self.opts();
        if eventual {
            invoke.consistency = Some(ConsistencyLevel::Eventual);
        }
        if eventual || self.config.canary == Some(Canary::StaleReads) {
            opts = Opts::eventual().timeout(self.config.op_timeout);
        }
        let invoke = self.rec.log(invoke);
        let answer = client.get(key, &opts).await;
        let answer = answer.as_ref();
        let completion = self.classify(answer, Kind::Read);
        if let Ok(r) = answer {
            if let Some(leader) = r.header("x-raft-leader").and_then(|l| l.parse().ok()) {
                self.leader_hint.store(leader, Ordering::Relaxed);
            }
        }
        let found = answer.ok().filter(|r| r.status.is_success());
        if completion.phase == Phase::Ok && opts.consistency == Some(ConsistencyLevel::Strong) {
            self.learn(key, found.and_then(|r| Some((r.text(), r.etag()?))));
        }
        self.complete(&invoke, answer, completion, |done| {
            done.value = found.map(|r| Value(r.text()));
        })
    }

    async fn write(
        &self,
        process: u64,
        client: &Client,
        key: &str,
        value: String,
    ) -> (Phase, String) {
        let mut invoke = Record::invoke(process, OpKind::Write, key, 0);
        invoke.value = Some(Value(value.clone()));
        let invoke = self.rec.log(invoke);
        let answer = client.put(key, value.clone(), &self.opts()).await;
        let answer = answer.as_ref();
        let completion = self.classify(answer, Kind::Write);
        if completion.phase == Phase::Ok {
            let index = answer.ok().and_then(|r| r.raft_index()).unwrap_or(0);
            self.learn(key, Some((value, index)));
        }
        self.complete(&invoke, answer, completion, |_| {})
    }

    async fn delete(&self, process: u64, client: &Client, key: &str) -> (Phase, String) {
        let invoke = self
            .rec
            .log(Record::invoke(process, OpKind::Delete, key, 0));
        let answer = client.delete(key, &self.opts()).await;
        let answer = answer.as_ref();
        let completion = self.classify(answer, Kind::Write);
        if completion.phase == Phase::Ok {
            self.learn(key, None);
        }
        self.complete(&invoke, answer, completion, |_| {})
    }

    /// Compare-and-set from `old` (last seen at mod index `index`) to `new`.
    #[allow(clippy::too_many_arguments)]
    async fn cas(
        &self,
        process: u64,
        client: &Client,
        key: &str,
        old: String,
        index: u64,
        new: String,
        txn: bool,
    ) -> (Phase, String) {
        let mut invoke = Record::invoke(process, OpKind::Cas, key, 0);
        invoke.expected = Some(Value(old.clone()));
        invoke.new = Some(Value(new.clone()));
        let invoke = self.rec.log(invoke);
        let answer = match txn {
            false => {
                let opts = self.opts().if_match(index);
                client.put(key, new.clone(), &opts).await
            }
            true => {
                let t = Txn {
                    compare: vec![Compare::value_eq(key, old)],
                    success: vec![Op::put(key, new.clone())],
                    failure: vec![],
                };
                client.txn(&t, &self.opts()).await
            }
        };
        let answer = answer.as_ref();
        let mut completion = self.classify(answer, Kind::Write);
        if txn && completion.phase == Phase::Ok {
            // 200 says the transaction ran; `succeeded` says whether the compare held.
            let ack = answer.ok().map(|r| r.json::<TxnAck>());
            completion = match ack {
                Some(Ok(TxnAck {
                    succeeded: Some(true),
                    ..
                })) => completion,
                Some(Ok(TxnAck {
                    succeeded: Some(false),
                    ..
                })) => Completion {
                    phase: Phase::Fail,
                    why: Some("200 succeeded=false".into()),
                },
                other => Completion {
                    phase: Phase::Info,
                    why: Some(format!("unreadable txn answer: {other:?}")),
                },
            };
        }
        if completion.phase == Phase::Ok {
            let index = answer.ok().and_then(|r| r.raft_index()).unwrap_or(0);
            self.learn(key, Some((new, index)));
        }
        self.complete(&invoke, answer, completion, |_| {})
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
