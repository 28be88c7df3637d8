//! `X-Consistency`, `X-Min-Index` and `X-Max-Staleness` -> [`ReadLevel`] / [`WriteLevel`].

use std::time::Duration;

use axum::http::HeaderMap;

use crate::error::Error;
use crate::store::{ReadLevel, WriteLevel};

pub const CONSISTENCY: &str = "x-consistency";
pub const MIN_INDEX: &str = "x-min-index";
pub const MAX_STALENESS: &str = "x-max-staleness";

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| Error::InvalidHeader {
                name,
                reason: "not visible ASCII".into(),
            }),
    }
}

fn level_name(headers: &HeaderMap) -> Result<String, Error> {
    Ok(header(headers, CONSISTENCY)?
        .unwrap_or("strong")
        .to_ascii_lowercase())
}

pub fn write_level(headers: &HeaderMap) -> Result<WriteLevel, Error> {
    match level_name(headers)?.as_str() {
        "strong" => Ok(WriteLevel::Strong),
        "eventual" => Ok(WriteLevel::Eventual),
        "all" => Ok(WriteLevel::All),
        other => Err(Error::InvalidConsistency(other.into())),
    }
}

pub fn read_level(headers: &HeaderMap) -> Result<ReadLevel, Error> {
    let min_index = header(headers, MIN_INDEX)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| Error::InvalidHeader {
                name: "X-Min-Index",
                reason: format!("{v:?} is not a log index (a non-negative integer)"),
            })
        })
        .transpose()?;
    let max_staleness = header(headers, MAX_STALENESS)?
        .map(parse_duration)
        .transpose()?;
    match level_name(headers)?.as_str() {
        "strong" => Ok(ReadLevel::Strong),
        "eventual" => Ok(ReadLevel::Eventual {
            min_index,
            max_staleness,
        }),
        "all" => Err(Error::AllOnRead),
        other => Err(Error::InvalidConsistency(other.into())),
    }
}

fn parse_duration(v: &str) -> Result<Duration, Error> {
    humantime::parse_duration(v).map_err(|e| Error::InvalidHeader {
        name: "X-Max-Staleness",
        reason: format!("{v:?} is not a duration such as 500ms or 2s: {e}"),
    })
}

pub fn write_level_name(l: WriteLevel) -> &'static str {
    match l {
        WriteLevel::Strong => "strong",
        WriteLevel::Eventual => "eventual",
        WriteLevel::All => "all",
    }
}

pub fn read_level_name(l: ReadLevel) -> &'static str {
    match l {
        ReadLevel::Strong => "strong",
        ReadLevel::Eventual { .. } => "eventual",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn defaults_to_strong() {
        assert_eq!(read_level(&headers(&[])).unwrap(), ReadLevel::Strong);
        assert_eq!(write_level(&headers(&[])).unwrap(), WriteLevel::Strong);
    }

    #[test]
    fn parses_eventual_options() {
        let h = headers(&[
            (CONSISTENCY, "Eventual"),
            (MIN_INDEX, "42"),
            (MAX_STALENESS, "500ms"),
        ]);
        assert_eq!(
            read_level(&h).unwrap(),
            ReadLevel::Eventual {
                min_index: Some(42),
                max_staleness: Some(Duration::from_millis(500))
            }
        );
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(
            read_level(&headers(&[(CONSISTENCY, "all")])),
            Err(Error::AllOnRead)
        ));
        assert!(matches!(
            write_level(&headers(&[(CONSISTENCY, "weak")])),
            Err(Error::InvalidConsistency(_))
        ));
        assert!(read_level(&headers(&[(MIN_INDEX, "-1")])).is_err());
        assert!(read_level(&headers(&[(MAX_STALENESS, "soon")])).is_err());
    }
}
