//! Client authentication and rights: bearer tokens from `--auth-file`
//! (TOML, reloaded on SIGHUP), each with a name, a role and optional key
//! prefixes.
//!
//! ```toml
//! [[token]]
//! name = "ops"                 # letters, digits, '.', '_', '-'
//! secret = "..."               # at least 16 visible characters
//! role = "admin"               # read | write | admin
//!
//! [[token]]
//! name = "feeds"
//! secret = "..."
//! role = "write"
//! prefixes = ["feeds/", "counters/"]   # only keys under these; none = every key
//! ```
//!
//! Without `--auth-file` every client may do everything. With it, every
//! route but `/health` and `/ready` needs `Authorization: Bearer <secret>`:
//! `401` without a known one, `403` beyond its rights. A secret is looked up
//! by its SHA-256, so the time a lookup takes says nothing about how much of
//! a guess was right.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::command::{Access, Command};
use crate::error::Error;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, scans and transactions that only read.
    Read,
    /// Also puts, deletes and transactions that write.
    Write,
    /// Also cluster operations (membership, snapshots, ...).
    Admin,
}

/// A client that presented a known token.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Key prefixes it may touch; empty: every key.
    pub prefixes: Vec<String>,
}

/// Who sent a request: a principal, or anyone when authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<Arc<Principal>>);

impl Caller {
    fn principal(&self) -> Option<&Principal> {
        self.0.as_deref()
    }

    /// At least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        match self.principal() {
            Some(p) if p.role < role => Err(Error::Forbidden(format!(
                "token {:?} has role {:?}; this needs {role:?}",
                p.name, p.role
            ))),
            _ => Ok(()),
        }
    }

    /// May read (`Access::Read`) or write `key`.
    pub fn may(&self, access: Access, key: &str) -> Result<(), Error> {
        let role = match access {
            Access::Read => Role::Read,
            Access::Write => Role::Write,
        };
        self.require(role)?;
        match self.principal() {
            Some(p) if !p.prefixes.is_empty() && !p.prefixes.iter().any(|x| key.starts_with(x)) => {
                Err(Error::Forbidden(format!(
                    "token {:?} may not touch key {key:?} (its prefixes: {:?})",
                    p.name, p.prefixes
                )))
            }
            _ => Ok(()),
        }
    }

    /// May list keys under `prefix`: the whole range must be within its rights.
    pub fn may_scan(&self, prefix: &str) -> Result<(), Error> {
        self.may(Access::Read, prefix)
    }

    /// May run `command`: every key it touches, checked before it is proposed.
    pub fn may_run(&self, command: &Command) -> Result<(), Error> {
        command
            .touches()
            .try_for_each(|(key, access)| self.may(access, key.as_str()))
    }

    /// The token's name, when clients authenticate.
    pub fn name(&self) -> Option<&str> {
        self.principal().map(|p| p.name.as_str())
    }

    /// The name a lease must belong to for this caller to use it: none for
    /// an admin, or when clients do not authenticate.
    pub fn bound_to_own_leases(&self) -> Option<&str> {
        self.principal()
            .filter(|p| p.role < Role::Admin)
            .map(|p| p.name.as_str())
    }

    /// An idempotency key in this caller's own space, so that one client can
    /// neither replay nor block another's (names hold no ':').
    pub fn scope_idempotency_key(&self, key: String) -> String {
        match self.principal() {
            Some(p) => format!("{}:{key}", p.name),
            None => key,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--auth-file {path}: {message}")]
    File { path: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    /// One secret, or several (`secrets`) while one is being rotated: all
    /// are the same token, with one idempotency-key space.
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
    role: Role,
    #[serde(default)]
    prefixes: Vec<String>,
}

const MIN_SECRET: usize = 16;

type Digest = [u8; 32];

fn digest(secret: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The tokens of one version of the auth file, by SHA-256 of their secret.
type Tokens = HashMap<Digest, Arc<Principal>>;

fn parse(text: &str) -> Result<Tokens, String> {
    let file: AuthFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut tokens = Tokens::new();
    let mut names = HashSet::new();
    for t in file.token {
        let valid_name = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_name {
            return Err(format!(
                "token name {:?}: 1-64 letters, digits, '.', '_' or '-'",
                t.name
            ));
        }
        if !names.insert(t.name.clone()) {
            return Err(format!("token name {:?} appears twice", t.name));
        }
        let secrets: Vec<String> = t.secret.iter().chain(&t.secrets).cloned().collect();
        if secrets.is_empty() {
            return Err(format!("token {:?}: give `secret` (or `secrets`)", t.name));
        }
        if secrets
            .iter()
            .any(|s| s.len() < MIN_SECRET || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!(
                "token {:?}: a secret is at least {MIN_SECRET} visible ASCII characters",
                t.name
            ));
        }
        if t.role == Role::Admin && !t.prefixes.is_empty() {
            return Err(format!(
                "token {:?}: an admin token acts on the whole cluster (members, backups of every key); \
                 give prefixes to read and write tokens only",
                t.name
            ));
        }
        if t.prefixes.iter().any(String::is_empty) {
            return Err(format!(
                "token {:?}: an empty prefix would allow every key; leave `prefixes` out instead",
                t.name
            ));
        }
        let principal = Arc::new(Principal {
            name: t.name.clone(),
            role: t.role,
            prefixes: t.prefixes,
        });
        for secret in secrets {
            if tokens
                .insert(digest(secret.as_bytes()), principal.clone())
                .is_some()
            {
                return Err(format!(
                    "token {:?} has a secret given twice or to another token",
                    t.name
                ));
            }
        }
    }
    if tokens.is_empty() {
        return Err("no [[token]] entries: nobody could use the node".into());
    }
    Ok(tokens)
}

/// The client tokens, shared by every request and replaced whole on reload.
#[derive(Clone, Default)]
pub struct Auth {
    /// `None`: authentication is off.
    file: Option<PathBuf>,
    tokens: Arc<RwLock<Arc<Tokens>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("file", &self.file).finish()
    }
}

impl Auth {
    /// Authentication off: every client may do everything.
    pub fn off() -> Auth {
        Auth::default()
    }

    /// Reads `path`; an unreadable or invalid file is an error.
    pub fn load(path: &Path) -> Result<Auth, AuthError> {
        let auth = Auth {
            file: Some(path.to_owned()),
            tokens: Arc::default(),
        };
        auth.reload()?;
        Ok(auth)
    }

    pub fn is_on(&self) -> bool {
        self.file.is_some()
    }

    /// Reads the file again and swaps the tokens in; on an error the tokens
    /// in use stay. Returns how many tokens are now known.
    pub fn reload(&self) -> Result<usize, AuthError> {
        let Some(path) = &self.file else {
            return Ok(0);
        };
        let err = |message: String| AuthError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        warn_if_readable_by_others(path);
        let tokens = parse(&text).map_err(err)?;
        let n = tokens.len();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tokens);
        Ok(n)
    }

    fn lookup(&self, secret: &[u8]) -> Option<Arc<Principal>> {
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokens.get(&digest(secret)).cloned()
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "--auth-file {} is readable by other users: chmod 600 it",
                path.display()
            );
        }
    }
}

/// Routes open to everyone: a supervisor or load balancer probes the first
/// two; the dashboard page holds no data (its requests carry a token).
const OPEN: [&str; 3] = ["/health", "/ready", "/ui"];

/// Middleware of the client routes: finds the caller and puts a [`Caller`]
/// in the request's extensions, or answers `401`.
pub async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    if !auth.is_on() || OPEN.contains(&req.uri().path()) {
        req.extensions_mut().insert(Caller::default());
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let Some(secret) = presented else {
        return Error::Unauthorized("this node requires Authorization: Bearer <token>".into())
            .into_response();
    };
    match auth.lookup(secret) {
        Some(p) => {
            req.extensions_mut().insert(Caller(Some(p)));
            next.run(req).await
        }
        None => Error::Unauthorized("unknown token".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[token]]
        name = "ops"
        secret = "ops-secret-0123456789"
        role = "admin"

        [[token]]
        name = "feeds"
        secret = "feeds-secret-0123456789"
        role = "write"
        prefixes = ["feeds/"]

        [[token]]
        name = "viewer"
        secret = "viewer-secret-0123456789"
        role = "read"
    "#;

    fn caller(tokens: &Tokens, secret: &str) -> Caller {
        Caller(tokens.get(&digest(secret.as_bytes())).cloned())
    }

    #[test]
    fn roles_and_prefixes() {
        let t = parse(FILE).unwrap();
        assert!(!t.contains_key(&digest(b"wrong-secret-0123456789")));
        let ops = caller(&t, "ops-secret-0123456789");
        let feeds = caller(&t, "feeds-secret-0123456789");
        let viewer = caller(&t, "viewer-secret-0123456789");
        assert!(ops.may(Access::Write, "anything").is_ok());
        assert!(ops.require(Role::Admin).is_ok());
        assert!(feeds.may(Access::Write, "feeds/1").is_ok());
        assert_eq!(
            feeds.may(Access::Read, "bank/1").unwrap_err().code(),
            "forbidden"
        );
        assert!(feeds.may_scan("feeds/").is_ok());
        assert!(feeds.may_scan("").is_err());
        assert!(feeds.require(Role::Admin).is_err());
        assert!(viewer.may(Access::Read, "bank/1").is_ok());
        assert!(viewer.may(Access::Write, "bank/1").is_err());
        assert_eq!(feeds.scope_idempotency_key("k".into()), "feeds:k");
        assert_eq!(Caller::default().scope_idempotency_key("k".into()), "k");
    }

    #[test]
    fn bad_files_are_refused() {
        let bad = [
            "",
            "[[token]]\nname='a'\nsecret='short'\nrole='read'",
            "[[token]]\nname='a b'\nsecret='0123456789abcdef'\nrole='read'",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='root'",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='read'\nprefixes=['']",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='read'\n[[token]]\nname='a'\nsecret='0123456789abcdeg'\nrole='read'",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='read'\n[[token]]\nname='b'\nsecret='0123456789abcdef'\nrole='read'",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='read'\nextra=1",
            "[[token]]\nname='a'\nsecret='0123456789abcdef'\nrole='admin'\nprefixes=['x/']",
            "[[token]]\nname='a'\nrole='read'",
        ];
        for text in bad {
            assert!(parse(text).is_err(), "accepted: {text}");
        }
    }
}
