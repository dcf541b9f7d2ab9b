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

/// Issue 13: the GC and manifest settings, by flag, variable and file, and their defaults
/// (the store's own, so the two cannot disagree).
#[test]
fn gc_settings_reach_the_store_from_flags_variables_and_the_file() {
    let defaults = parse(&[]);
    let store = defaults.store().unwrap();
    assert_eq!(store.gc_grace, crate::store::DEFAULT_GC_GRACE);
    assert_eq!(store.gc_interval, crate::store::DEFAULT_GC_INTERVAL);
    assert!(!store.gc_unreferenced);
    assert!(
        store.pin_referenced,
        "no origin yet: referenced chunks are pinned"
    );
    assert_eq!(defaults.max_manifest_bytes, 8 << 20);
    assert_eq!(store.max_manifests, crate::store::DEFAULT_MAX_MANIFESTS);

    let flags = [
        "--gc-grace=90s",
        "--gc-interval=0",
        "--gc-unreferenced",
        "--max-manifest-bytes=1M",
        "--max-manifests=7",
    ];
    let set = parse(&flags);
    let store = set.store().unwrap();
    assert_eq!(store.gc_grace, Duration::from_secs(90));
    assert_eq!(
        store.gc_interval,
        Duration::ZERO,
        "0: sweeps only on POST /v1/gc"
    );
    assert!(store.gc_unreferenced);
    assert_eq!(set.max_manifest_bytes, 1 << 20);
    assert_eq!(store.max_manifests, 7);

    // Each is also a CHUNKD_* variable (read by clap; not set here, as the environment is
    // shared by the tests running at once).
    let command = Cli::command();
    for (id, variable) in [
        ("gc_grace", "CHUNKD_GC_GRACE"),
        ("gc_interval", "CHUNKD_GC_INTERVAL"),
        ("gc_unreferenced", "CHUNKD_GC_UNREFERENCED"),
        ("max_manifest_bytes", "CHUNKD_MAX_MANIFEST_BYTES"),
        ("max_manifests", "CHUNKD_MAX_MANIFESTS"),
    ] {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .unwrap_or_else(|| panic!("no setting {id}"));
        assert_eq!(arg.get_env().and_then(|v| v.to_str()), Some(variable));
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunkd.toml");
    std::fs::write(
        &path,
        "gc-grace = \"2m\"\ngc_interval = 5\ngc-unreferenced = true\nmax-manifest-bytes = \"2M\"\nmax-manifests = 9\n",
    )
    .unwrap();
    let matches = command.clone().try_get_matches_from(["serve"]).unwrap();
    let extra = file_arguments(&path, &command, &matches).unwrap();
    let extra: Vec<&str> = extra.iter().map(|a| a.to_str().unwrap()).collect();
    let from_file = parse(&extra);
    let store = from_file.store().unwrap();
    assert_eq!(store.gc_grace, Duration::from_secs(120));
    assert_eq!(store.gc_interval, Duration::from_secs(5));
    assert!(store.gc_unreferenced);
    assert_eq!(from_file.max_manifest_bytes, 2 << 20);
    assert_eq!(store.max_manifests, 9);
}
