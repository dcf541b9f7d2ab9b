//! Tests of `config`: the settings parse from flags, variables and the file alike.
//!
//! **Architecture invariant:** compiled only for tests (`config`'s `tests` module, kept in
//! its own file so `config.rs` stays under 500 lines); never part of the binary.

use super::*;
use clap::{CommandFactory, FromArgMatches, Parser};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeConfig,
}

fn parse(args: &[&str]) -> ServeConfig {
    let matches = Cli::command()
        .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
        .unwrap();
    Cli::from_arg_matches(&matches).unwrap().serve
}

/// Issue 11, finding 13: `CHUNKD_ACCESS_LOG=1` was refused. An environment variable of
/// an on/off setting goes through the setting's value parser, checked here directly.
#[test]
fn on_off_settings_take_what_clap_boolish_takes() {
    let command = Cli::command();
    let flags: Vec<_> = command
        .get_arguments()
        .filter(|a| matches!(a.get_action(), ArgAction::SetTrue))
        .collect();
    assert!(flags.len() >= 5);
    for arg in flags {
        // As a flag taking a value, the setting's parser sees what its environment
        // variable would give it.
        let id = arg.get_id().clone();
        let with_value = command
            .clone()
            .mut_arg(&id, |a| a.action(ArgAction::Set).num_args(1));
        let parse = |text: &str| {
            with_value
                .clone()
                .try_get_matches_from(["serve", &format!("--{}={text}", arg.get_long().unwrap())])
        };
        for text in ["1", "0", "yes", "no", "true", "false", "on", "off"] {
            if let Err(e) = parse(text) {
                panic!("{id} = {text}: {e}");
            }
        }
        assert!(parse("maybe").is_err(), "{id}");
    }
}

/// Issue 11, finding 13: a bad value in the file is reported under its key.
#[test]
fn file_values_are_checked_under_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunkd.toml");
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(["serve"]).unwrap();
    std::fs::write(&path, "max-connections = \"many\"\n").unwrap();
    let error = file_arguments(&path, &command, &matches)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"max-connections\" = many") && !error.contains("--"),
        "{error}"
    );
    std::fs::write(
        &path,
        "access-log = \"yes\"\npin-cores = false\nidle-timeout = \"5s\"\n",
    )
    .unwrap();
    let extra = file_arguments(&path, &command, &matches).unwrap();
    assert_eq!(extra, ["--access-log", "--idle-timeout=5s"]);
}

/// Issue 11, finding 11: fewer devices than shards a chunk is refused unless allowed.
#[test]
fn fewer_devices_than_shards_is_refused_unless_allowed() {
    let two = ["--device", "a:1G", "--device", "b:1G"];
    let error = parse(&two).store().unwrap_err().to_string();
    assert!(error.contains("2 device(s) for 5 shards"), "{error}");
    let allowed: Vec<&str> = two
        .iter()
        .copied()
        .chain(["--allow-fewer-devices-than-shards"])
        .collect();
    assert_eq!(parse(&allowed).store().unwrap().devices.len(), 2);
    assert_eq!(parse(&[]).store().unwrap().devices.len(), 5);
}
