//! `quorumkv serve --config FILE`: the same settings as the flags, in TOML,
//! one key per flag (`max-connections = 4096` or `max_connections = 4096`;
//! lists as arrays, e.g. `join = ["http://a:8001", "http://b:8001"]`).
//!
//! Precedence, highest first: a flag on the command line, its `QKV_*`
//! environment variable, the file, the default. The file's settings become
//! flags added to the command line for every setting that neither a flag nor
//! its environment variable gives, so clap validates them like any other.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, Command};

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("--config {path}: {message}")]
    File { path: String, message: String },
}

/// `argv` with the settings of the `--config` file it names (if any) added
/// as flags, for the `serve` subcommand `serve` describes.
pub fn expand(argv: Vec<OsString>, serve: &Command) -> Result<Vec<OsString>, ConfigFileError> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let err = |message: String| ConfigFileError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut out = argv;
    for (key, value) in table {
        let name = key.replace('_', "-");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && name != "config")
            .ok_or_else(|| {
                err(format!(
                    "unknown setting {key:?} (settings are the flags of `quorumkv serve --help`)"
                ))
            })?;
        if given_elsewhere(&out, arg) {
            continue;
        }
        let flag = format!("--{name}");
        match (value, arg.get_action().takes_values()) {
            (toml::Value::Boolean(true), false) => out.push(flag.into()),
            (toml::Value::Boolean(false), false) => {}
            (value, true) => {
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(s) => Ok(s.clone()),
                            other => {
                                Err(err(format!("{key}: list items are strings, not {other}")))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => {
                        return Err(err(format!("{key}: {other} is not a value for --{name}")))
                    }
                };
                out.push(flag.into());
                out.push(text.into());
            }
            (other, false) => {
                return Err(err(format!(
                    "{key}: a switch takes true or false, not {other}"
                )))
            }
        }
    }
    Ok(out)
}

/// `--config FILE` / `--config=FILE` on the command line, else `QKV_CONFIG`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    for (i, a) in args.iter().enumerate() {
        if a == "--config" {
            return args.get(i + 1).map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("QKV_CONFIG").map(PathBuf::from)
}

/// Whether the command line or the environment already sets `arg`.
fn given_elsewhere(argv: &[OsString], arg: &Arg) -> bool {
    let long = arg.get_long().map(|l| format!("--{l}"));
    let aliases: Vec<String> = arg
        .get_all_aliases()
        .unwrap_or_default()
        .into_iter()
        .map(|a| format!("--{a}"))
        .collect();
    let on_command_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        let name = a.split('=').next().unwrap_or_default();
        long.as_deref() == Some(name) || aliases.iter().any(|x| x == name)
    });
    let in_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
    on_command_line || in_env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;
    use clap::Args;

    fn serve() -> Command {
        ServeArgs::augment_args(Command::new("serve"))
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_file_fills_in_what_flags_do_not_give() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "id = 2\nmax_connections = 99\nheader-read-timeout-ms = 1234\n\
             join = [\"http://a:8001\", \"http://b:8001\"]\nlearner = true\nfast-failover = false\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let out = expand(
            argv(&[
                "quorumkv",
                "serve",
                "--config",
                &path,
                "--id",
                "7",
                "--data-dir",
                "/x",
            ]),
            &serve(),
        )
        .unwrap();
        let joined: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = joined.join(" ");
        // The flag wins over the file.
        assert!(
            text.contains("--id 7") && !text.contains("--id 2"),
            "{text}"
        );
        assert!(text.contains("--max-connections 99"), "{text}");
        assert!(text.contains("--header-read-timeout-ms 1234"), "{text}");
        assert!(
            text.contains("--join http://a:8001,http://b:8001"),
            "{text}"
        );
        assert!(text.contains("--learner"), "{text}");
        assert!(text.contains("--fast-failover false"), "{text}");
    }

    #[test]
    fn unknown_settings_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        for (text, why) in [
            ("max_conections = 1\n", "unknown setting"),
            ("id = \n", "invalid"),
            ("learner = \"yes\"\n", "switch"),
            ("join = [1, 2]\n", "list items"),
        ] {
            std::fs::write(&file, text).unwrap();
            let path = file.display().to_string();
            let e = expand(argv(&["quorumkv", "serve", "--config", &path]), &serve())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.to_lowercase().contains(why), "{text:?}: {e}");
        }
        let missing = expand(
            argv(&["q", "serve", "--config=/nonexistent.toml"]),
            &serve(),
        );
        assert!(missing.is_err());
        // No --config: nothing changes.
        let plain = argv(&["q", "serve", "--id", "1"]);
        assert_eq!(expand(plain.clone(), &serve()).unwrap(), plain);
    }
}
