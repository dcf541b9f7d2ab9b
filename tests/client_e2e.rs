//! The end-to-end test: a real ext4 image (`mkfs.ext4 -d` of real files) packed,
//! pushed to a node, fetched back byte-exact (whole and a range), pushed again (nothing
//! uploaded); its manifest deleted, the grace period waited out, a sweep that frees the
//! space; and a second round in which a read during the grace period cancels that one
//! chunk's deletion. Everything through the real binary and HTTP.
//!
//! Needs `mkfs.ext4` (Debian: e2fsprogs); skipped with a clear line where it is missing,
//! and a failure under CI.

#[path = "common/binary.rs"]
mod binary;
mod harness;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use binary::run_ok;
use chunkd::image::{MANIFEST_FILE, Manifest};
use harness::{Launch, Server, get, metric, metrics, request};

/// Bytes of real files copied into the file system: enough for a few dozen chunks, few
/// enough that the test takes seconds.
const CONTENT_BYTES: u64 = 12 << 20;
/// The image's size; the unused part of the file system is mostly zeros (holes).
const IMAGE_SIZE: &str = "40M";
/// The node's grace period: the test waits it out twice.
const GRACE: Duration = Duration::from_secs(2);

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// Whether `mkfs.ext4` runs (it has `-V`, not `--version`); the skip line otherwise, or
/// a failure under CI, where `.ci/run` installs it.
fn mkfs_or_skip() -> bool {
    let runs = Command::new("mkfs.ext4")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        assert!(
            std::env::var_os("CI").is_none(),
            "`mkfs.ext4` is needed for the end-to-end test; .ci/run installs e2fsprogs"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: `mkfs.ext4` is needed for the end-to-end test and could not be run \
             (Debian: apt-get install e2fsprogs)"
        );
    }
    runs
}

/// Copies regular files from `sources` (walked in name order) into `into` until
/// `budget` bytes are copied.
fn copy_real_files(sources: &[PathBuf], into: &Path, budget: u64) -> u64 {
    let mut copied = 0u64;
    let mut stack: Vec<PathBuf> = sources.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        if copied >= budget {
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let Ok(entries) = fs::read_dir(&path) else {
                continue;
            };
            let mut children: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        } else if meta.is_file() && meta.len() <= budget - copied {
            let target = into.join(format!(
                "{copied:010}-{}",
                path.file_name().unwrap().to_string_lossy()
            ));
            if fs::copy(&path, &target).is_ok() {
                copied += meta.len();
            }
        }
    }
    copied
}

/// An ext4 image of real files (this crate's sources, then documentation under
/// /usr/share/doc), `IMAGE_SIZE` long.
fn real_image(dir: &Path) -> PathBuf {
    let content = dir.join("content");
    fs::create_dir(&content).unwrap();
    let sources = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from("/usr/share/doc"),
        PathBuf::from("/usr/share/locale"),
    ];
    let copied = copy_real_files(&sources, &content, CONTENT_BYTES);
    assert!(
        copied > CONTENT_BYTES / 2,
        "only {copied} bytes of real files found"
    );
    let image = dir.join("fs.ext4");
    let output = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-d",
            path_str(&content),
            path_str(&image),
            IMAGE_SIZE,
        ])
        .output()
        .expect("mkfs.ext4 runs");
    assert!(
        output.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    image
}

/// POST /v1/gc's JSON answer.
fn sweep(server: &Server) -> serde_json::Value {
    let response = request(server.addr, "POST", "/v1/gc", &[], b"");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

fn count(json: &serde_json::Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {json}"))
}

/// Sleeps until `GRACE` (and a margin) has passed since `since`.
fn wait_past_grace(since: Instant) {
    let until = since + GRACE + Duration::from_millis(500);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}

fn chunk_status(server: &Server, id: &str) -> u16 {
    get(server.addr, &format!("/v1/chunks/{id}"), &[]).status
}

#[test]
fn a_real_image_goes_to_a_node_and_back_and_its_space_is_freed_after_the_manifest_goes() {
    if !mkfs_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = real_image(dir.path());
    let image_bytes = fs::read(&image).unwrap();
    let packed = dir.path().join("fs-image");
    run_ok(&[
        "pack",
        path_str(&image),
        "--out",
        path_str(&packed),
        "--quiet",
    ]);
    let manifest = Manifest::read(&packed.join(MANIFEST_FILE)).unwrap();
    let mut ids: Vec<String> = manifest.chunks.iter().map(|c| c.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    let distinct = ids.len() as u64;
    let sealed_bytes: u64 = ids
        .iter()
        .map(|id| fs::metadata(packed.join("chunks").join(id)).unwrap().len())
        .sum();
    assert!(
        distinct >= 8 && !manifest.holes.is_empty(),
        "{distinct} chunks, {} holes",
        manifest.holes.len()
    );

    let server = Server::start(Launch::args(&["--gc-grace", "2s", "--gc-interval", "0s"]));
    let url = server.url("");
    let push = || run_ok(&["push", path_str(&packed), "--node", &url, "--quiet"]);
    let said = push();
    let expected = format!(
        "{} chunks, {distinct} distinct, {distinct} uploaded ({sealed_bytes} bytes)",
        manifest.chunks.len()
    );
    assert!(said.contains(&expected), "{said}\nexpected: {expected}");

    // Fetched back byte-exact: whole, and a range across chunk boundaries.
    let whole = dir.path().join("whole.ext4");
    run_ok(&[
        "fetch",
        path_str(&packed),
        "--node",
        &url,
        "--out",
        path_str(&whole),
        "--quiet",
    ]);
    assert!(
        fs::read(&whole).unwrap() == image_bytes,
        "the fetched image differs"
    );
    let (offset, length) = (1_000_000usize, 5_000_000usize);
    let part = dir.path().join("part");
    run_ok(&[
        "fetch",
        path_str(&packed),
        "--node",
        &url,
        "--out",
        path_str(&part),
        "--offset",
        &offset.to_string(),
        "--length",
        &length.to_string(),
        "--quiet",
    ]);
    assert!(
        fs::read(&part).unwrap() == image_bytes[offset..offset + length],
        "the range differs"
    );
    let said = push();
    assert!(
        said.contains(&format!("{distinct} distinct, 0 uploaded (0 bytes)")),
        "{said}"
    );

    // Round 1: the manifest goes; nothing is swept within the grace period, all after.
    let text = metrics(server.addr);
    let flash_before = metric(&text, "chunkd_cache_bytes", &[("tier", "flash")]);
    assert_eq!(
        metric(&text, "chunkd_referenced_chunks", &[]),
        distinct as f64
    );
    assert_eq!(metric(&text, "chunkd_manifests", &[]), 1.0);
    assert!(
        flash_before >= sealed_bytes as f64,
        "flash holds {flash_before} bytes"
    );
    let deleted = Instant::now();
    let response = request(server.addr, "DELETE", "/v1/manifests/fs-image", &[], b"");
    assert_eq!(response.status, 204, "{}", response.text());
    let early = sweep(&server);
    assert_eq!(
        count(&early, "swept_chunks"),
        0,
        "swept within the grace period: {early}"
    );
    assert_eq!(count(&early, "expired_remaining"), distinct, "{early}");
    wait_past_grace(deleted);
    let swept = sweep(&server);
    assert_eq!(count(&swept, "swept_chunks"), distinct, "{swept}");
    assert_eq!(count(&swept, "swept_bytes"), sealed_bytes, "{swept}");
    assert_eq!(count(&swept, "expired_remaining"), 0, "{swept}");
    assert!(swept["duration_seconds"].as_f64().is_some(), "{swept}");
    for id in &ids {
        assert_eq!(
            chunk_status(&server, id),
            404,
            "chunk {id} survived the sweep"
        );
    }
    let text = metrics(server.addr);
    assert_eq!(
        metric(&text, "chunkd_gc_swept_chunks_total", &[]),
        distinct as f64
    );
    assert_eq!(
        metric(&text, "chunkd_gc_swept_bytes_total", &[]),
        sealed_bytes as f64
    );
    assert_eq!(metric(&text, "chunkd_manifests", &[]), 0.0);
    assert_eq!(metric(&text, "chunkd_store_chunks", &[]), 0.0);
    let flash_after = metric(&text, "chunkd_cache_bytes", &[("tier", "flash")]);
    assert!(
        flash_before - flash_after >= sealed_bytes as f64,
        "flash bytes {flash_before} → {flash_after}"
    );
    // And a fetch now fails, leaving nothing.
    let gone = dir.path().join("gone.ext4");
    let output = binary::chunkd(&[
        "fetch",
        path_str(&packed),
        "--node",
        &url,
        "--out",
        path_str(&gone),
        "--quiet",
    ]);
    assert!(!output.status.success() && !gone.exists());
    assert!(String::from_utf8_lossy(&output.stderr).contains("answered 404"));

    // Round 2: pushed again; one chunk read during the grace period survives the sweep.
    let said = push();
    assert!(
        said.contains(&format!("{distinct} distinct, {distinct} uploaded")),
        "{said}"
    );
    let reads_before = metric(&metrics(server.addr), "chunkd_gc_expired_reads_total", &[]);
    let deleted = Instant::now();
    let response = request(server.addr, "DELETE", "/v1/manifests/fs-image", &[], b"");
    assert_eq!(response.status, 204, "{}", response.text());
    let kept = &ids[ids.len() / 2];
    let read = get(server.addr, &format!("/v1/chunks/{kept}"), &[]);
    assert_eq!(read.status, 200, "an expired chunk is still served");
    assert!(read.body == fs::read(packed.join("chunks").join(kept)).unwrap());
    let reads_after = metric(&metrics(server.addr), "chunkd_gc_expired_reads_total", &[]);
    assert_eq!(
        reads_after,
        reads_before + 1.0,
        "the expired read was not counted"
    );
    let state =
        |id: &str| get(server.addr, &format!("/v1/chunks/{id}/meta"), &[]).json()["state"].clone();
    assert_eq!(state(kept), "unreferenced", "the read cancels the deletion");
    let other = ids.iter().find(|id| *id != kept).expect("another chunk");
    assert_eq!(state(other), "expired");
    wait_past_grace(deleted);
    let swept = sweep(&server);
    assert_eq!(count(&swept, "swept_chunks"), distinct - 1, "{swept}");
    for id in &ids {
        let expected = if id == kept { 200 } else { 404 };
        assert_eq!(chunk_status(&server, id), expected, "chunk {id}");
    }
}
