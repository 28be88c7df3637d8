//! `lease`, `members`, `status`.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use reqwest::Method;

use crate::cli::conn::{Answer, Conn, Output, Retry};
use crate::cli::{print_json, CliError};

#[derive(Debug, clap::Subcommand)]
pub enum LeaseCmd {
    /// A new lease with this TTL (e.g. 10s); prints its id.
    Grant { ttl: String },
    /// Keep a lease alive: once, or every TTL/3 until interrupted (--forever).
    Keepalive {
        id: u64,
        #[arg(long)]
        forever: bool,
    },
    /// End a lease now; its keys are deleted.
    Revoke { id: u64 },
    /// A lease's TTL, time left and keys.
    Info { id: u64 },
    /// Every lease.
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum MembersCmd {
    /// The members as the leader sees them.
    List,
    /// Add a node as a learner (it replicates but does not vote); promote
    /// it once caught up.
    Add {
        id: u64,
        /// Its peer URL (http(s)://host:port of its --peer-listen).
        peer_url: String,
    },
    /// Make a caught-up learner a voter.
    Promote { id: u64 },
    /// Remove a member (a leader hands over first).
    Remove { id: u64 },
}

fn ms(v: &serde_json::Value) -> String {
    v.as_u64().map_or("-".into(), |n| format!("{n} ms"))
}

fn num(v: &serde_json::Value) -> String {
    v.as_u64().map_or("-".into(), |n| n.to_string())
}

pub async fn lease(c: &Conn, cmd: LeaseCmd) -> Result<(), CliError> {
    match cmd {
        LeaseCmd::Grant { ttl } => {
            let body = serde_json::json!({ "ttl": ttl }).to_string();
            let v = c
                .json(Method::POST, "/v1/lease", Retry::IfNotSent, |r| {
                    r.header("content-type", "application/json")
                        .body(body.clone())
                })
                .await?;
            match c.output {
                Output::Json => print_json(&v),
                Output::Text => println!("{}", num(&v["id"])),
            }
        }
        LeaseCmd::Keepalive { id, forever } => {
            let path = format!("/v1/lease/{id}/keepalive");
            let mut ttl_ms = 3000u64;
            let mut last_kept = std::time::Instant::now();
            loop {
                let answer = c
                    .send(Method::POST, &path, Retry::Always, |r| r)
                    .await
                    .and_then(Answer::ok);
                let v = match answer {
                    Ok(a) => a.json()?,
                    // Gone, or not ours: keeping it is over.
                    Err(e @ (CliError::NotFound(_) | CliError::Denied(_) | CliError::Usage(_))) => {
                        return Err(e)
                    }
                    // No leader for a moment (an election): try again while
                    // the lease may still be alive.
                    Err(e) if forever && last_kept.elapsed().as_millis() < u128::from(ttl_ms) => {
                        eprintln!("quorumkv: keepalive of lease {id} failed ({e}); retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                last_kept = std::time::Instant::now();
                ttl_ms = v["ttl_ms"].as_u64().unwrap_or(ttl_ms);
                match c.output {
                    Output::Json => print_json(&v),
                    Output::Text => println!("lease {id}: {} left", ms(&v["remaining_ms"])),
                }
                if !forever {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(ttl_ms / 3)).await;
            }
        }
        LeaseCmd::Revoke { id } => {
            let path = format!("/v1/lease/{id}");
            let v = c
                .json(Method::DELETE, &path, Retry::IfNotSent, |r| r)
                .await?;
            match c.output {
                Output::Json => print_json(&v),
                Output::Text => println!("lease {id} revoked; {} keys deleted", num(&v["deleted"])),
            }
        }
        LeaseCmd::Info { id } => {
            let path = format!("/v1/lease/{id}");
            let v = c.json(Method::GET, &path, Retry::Always, |r| r).await?;
            match c.output {
                Output::Json => print_json(&v),
                Output::Text => {
                    println!(
                        "lease {id}: ttl {}, {} left",
                        ms(&v["ttl_ms"]),
                        ms(&v["remaining_ms"])
                    );
                    for k in v["keys"].as_array().into_iter().flatten() {
                        println!("  {}", k.as_str().unwrap_or(""));
                    }
                }
            }
        }
        LeaseCmd::List => {
            let v = c
                .json(Method::GET, "/v1/leases", Retry::Always, |r| r)
                .await?;
            match c.output {
                Output::Json => print_json(&v),
                Output::Text => {
                    for l in v["leases"].as_array().into_iter().flatten() {
                        println!("{}  ttl {}", num(&l["id"]), ms(&l["ttl_ms"]));
                    }
                }
            }
        }
    }
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

pub async fn members(c: &Conn, cmd: MembersCmd) -> Result<(), CliError> {
    let answer = match cmd {
        MembersCmd::List => {
            c.send(Method::GET, "/v1/cluster/members", Retry::Always, |r| r)
                .await?
        }
        MembersCmd::Add { id, peer_url } => {
            let body = serde_json::json!({ "id": id, "peer_url": peer_url }).to_string();
            c.send(Method::POST, "/v1/cluster/members", Retry::IfNotSent, |r| {
                r.header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?
        }
        MembersCmd::Promote { id } => {
            let path = format!("/v1/cluster/members/{id}/promote");
            c.send(Method::POST, &path, Retry::IfNotSent, |r| r).await?
        }
        MembersCmd::Remove { id } => {
            let path = format!("/v1/cluster/members/{id}");
            c.send(Method::DELETE, &path, Retry::IfNotSent, |r| r)
                .await?
        }
    };
    let v = answer.ok()?.json()?;
    if c.output == Output::Json {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["id", "peer url", "role", "matched index", "lag", "last ack"]);
    for m in v["members"].as_array().into_iter().flatten() {
        let role = match (m["leader"].as_bool(), m["voter"].as_bool()) {
            (Some(true), _) => "leader",
            (_, Some(true)) => "voter",
            _ => "learner",
        };
        t.add_row(vec![
            num(&m["id"]),
            m["peer_url"].as_str().unwrap_or("").to_string(),
            role.to_string(),
            num(&m["matched_index"]),
            num(&m["lag"]),
            ms(&m["last_ack_ms"]),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Asks every endpoint for its view; one that does not answer is a row too.
pub async fn status(c: &Conn) -> Result<(), CliError> {
    let mut views = Vec::new();
    for endpoint in c.endpoints() {
        let view = match c.request(Method::GET, endpoint, "/v1/cluster").send().await {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                let body = r.text().await.unwrap_or_default();
                return Err(CliError::Denied(format!("{endpoint}: {body}")));
            }
            _ => None,
        };
        views.push((endpoint.clone(), view));
    }
    if views.iter().all(|(_, v)| v.is_none()) {
        return Err(CliError::Unavailable(format!(
            "no endpoint answered ({})",
            c.endpoints().join(", ")
        )));
    }
    if c.output == Output::Json {
        let nodes: Vec<serde_json::Value> = views
            .iter()
            .map(|(e, v)| match v {
                Some(v) => v.clone(),
                None => serde_json::json!({ "client_url": e, "error": "unreachable" }),
            })
            .collect();
        print_json(&serde_json::json!({ "nodes": nodes }));
        return Ok(());
    }
    // Lag as the leader sees it.
    let leader_view = views
        .iter()
        .filter_map(|(_, v)| v.as_ref())
        .find(|v| v["state"] == "Leader");
    let lag_of = |id: &serde_json::Value| -> String {
        let Some(l) = leader_view else {
            return "-".into();
        };
        if l["id"] == *id {
            return "0".into();
        }
        l["replication"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == *id)
            .map_or("-".into(), |r| num(&r["lag"]))
    };
    let mut t = table(&[
        "id",
        "address",
        "role",
        "term",
        "applied",
        "committed",
        "lag",
        "last contact",
    ]);
    for (endpoint, view) in &views {
        match view {
            Some(v) => t.add_row(vec![
                num(&v["id"]),
                v["client_url"].as_str().unwrap_or(endpoint).to_string(),
                v["state"].as_str().unwrap_or("").to_lowercase(),
                num(&v["term"]),
                num(&v["applied_index"]),
                num(&v["committed_index"]),
                lag_of(&v["id"]),
                ms(&v["last_contact_ms"]),
            ]),
            None => t.add_row(vec![
                "?".into(),
                endpoint.clone(),
                "unreachable".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        };
    }
    println!("{t}");
    match leader_view {
        Some(l) => println!("leader: node {}, term {}", num(&l["id"]), num(&l["term"])),
        None => println!("no leader known to the nodes that answered"),
    }
    Ok(())
}
