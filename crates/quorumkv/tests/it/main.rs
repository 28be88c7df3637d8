//! Integration tests: real `quorumkv serve` processes on loopback ports,
//! one cluster per test (see `harness`).

mod attack;
mod auth;
mod backup;
mod bad_txn;
mod cli;
mod conditional;
mod consistency;
mod deploy;
mod durability;
mod failover;
mod harness;
mod http;
mod idempotency;
mod kv;
mod lease;
mod lifecycle;
mod limits;
mod members;
mod money;
mod netns;
mod observe;
mod slow_clients;
mod tls;
mod torture;
mod txn;
mod watch;
