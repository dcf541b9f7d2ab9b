//! `chunkd push`, `chunkd fetch` and `chunkd pack --node`, run as a user runs them: the
//! real binary against a real node (`harness`), or against a stand-in node
//! (`client/fake_node.rs`) for answers a real node gives only in rare states.

#[path = "common/binary.rs"]
mod binary;
#[path = "client/fake_node.rs"]
mod fake_node;
mod harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use binary::chunkd;
use chunkd::image::{MANIFEST_FILE, Manifest};
use fake_node::{FakeNode, dead_address};
use harness::{Launch, Server, chunk_bytes, get, id_of, put_chunk, request};

const CHUNK: usize = 512 * 1024;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// A packed image in a temporary directory: `image` (the file) and `packed` (the pack).
struct Packed {
    dir: tempfile::TempDir,
    bytes: Vec<u8>,
    packed: PathBuf,
}

impl Packed {
    /// Packs an image of seven 512 KiB pieces and a short tail: noise, a hole, the first
    /// noise again (a repeated chunk), two holes, other noise, and a tail of noise and
    /// zeros — so fetches meet holes, repeats and a short last chunk. `seed` makes the
    /// chunks distinct from other tests'.
    fn new(seed: u64) -> Packed {
        let a = chunk_bytes(seed, CHUNK);
        let mut tail = chunk_bytes(seed + 2, 1000);
        tail.resize(70_000, 0);
        let bytes = [
            a.clone(),
            vec![0; CHUNK],
            a,
            vec![0; 2 * CHUNK],
            chunk_bytes(seed + 1, CHUNK),
            tail,
        ]
        .concat();
        Packed::of(bytes, "image.packed")
    }

    fn of(bytes: Vec<u8>, name: &str) -> Packed {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let image = dir.path().join("image");
        fs::write(&image, &bytes).expect("the image is written");
        let packed = dir.path().join(name);
        run_ok(&[
            "pack",
            path_str(&image),
            "--out",
            path_str(&packed),
            "--quiet",
        ]);
        Packed { dir, bytes, packed }
    }

    fn manifest(&self) -> Manifest {
        Manifest::read(&self.packed.join(MANIFEST_FILE)).expect("the manifest")
    }

    /// The distinct sealed chunks, as files of the pack.
    fn chunk_files(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<_> = fs::read_dir(self.packed.join("chunks"))
            .expect("the chunks folder")
            .map(|e| fs::read(e.expect("an entry").path()).expect("a chunk"))
            .collect();
        files.sort();
        files
    }

    /// Puts every chunk straight on `server` (no manifest: the fetch tests need only
    /// the chunks).
    fn put_chunks(&self, server: &Server) {
        for bytes in self.chunk_files() {
            let status = put_chunk(server.addr, &bytes, &[]).status;
            assert!(status == 201 || status == 200, "PUT answered {status}");
        }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `chunkd fetch` of this pack into `out` (extra arguments after `--node NODES`).
    fn fetch(&self, nodes: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "fetch",
            path_str(&self.packed),
            "--node",
            nodes,
            "--out",
            path_str(out),
            "--quiet",
        ];
        args.extend(extra);
        chunkd(&args)
    }

    /// Temporary files a fetch left in the directory.
    fn temporaries(&self) -> Vec<String> {
        fs::read_dir(self.dir.path())
            .expect("the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.contains(".fetching-"))
            .collect()
    }
}

fn run_ok(args: &[&str]) -> String {
    binary::run_ok(args)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The fetch into `out` failed with a message that says each of `says`, and left
/// nothing at `out` nor a temporary file beside it.
fn assert_failed_without_output(
    packed: &Packed,
    out: &Path,
    output: &std::process::Output,
    says: &[&str],
) {
    assert!(!output.status.success(), "the fetch should fail");
    let message = stderr(output);
    for part in says {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
    assert!(!out.exists(), "{} exists after: {message}", out.display());
    assert_eq!(
        packed.temporaries(),
        Vec::<String>::new(),
        "left by: {message}"
    );
}

#[test]
fn fetch_rebuilds_the_image_and_byte_ranges_exactly() {
    let server = Server::start(Launch::default());
    let packed = Packed::new(101);
    packed.put_chunks(&server);
    let url = server.url("");
    let whole = packed.out("whole");
    let output = packed.fetch(&url, &whole, &["--parallel", "3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        fs::read(&whole).unwrap() == packed.bytes,
        "the whole image differs"
    );
    let said = String::from_utf8_lossy(&output.stdout);
    // Three distinct chunks: noise A (used twice), noise B and the tail.
    assert!(said.contains("from 3 chunks"), "{said}");
    let len = packed.bytes.len() as u64;
    for (offset, length) in [
        (0, 1),
        (600_000, 900_000),                     // across a chunk boundary
        (CHUNK as u64 - 10, CHUNK as u64 + 20), // a hole in the middle
        (CHUNK as u64, 3 * CHUNK as u64),       // holes and the repeat only
        (len - 70_000, 70_000),                 // the short tail
        (len, 0),                               // nothing, at the very end
    ] {
        let out = packed.out("range");
        let (o, l) = (offset.to_string(), length.to_string());
        let output = packed.fetch(&url, &out, &["--offset", &o, "--length", &l]);
        assert!(
            output.status.success(),
            "{offset}+{length}: {}",
            stderr(&output)
        );
        let expected = &packed.bytes[offset as usize..(offset + length) as usize];
        assert!(
            fs::read(&out).unwrap() == expected,
            "bytes {offset}+{length} differ"
        );
    }
    let out = packed.out("past");
    let past = packed.fetch(&url, &out, &["--offset", &len.to_string(), "--length", "1"]);
    assert_failed_without_output(&packed, &out, &past, &["past the end of the image"]);
}

#[test]
fn fetch_tries_the_next_node_and_fails_clearly_when_none_answers() {
    let server = Server::start(Launch::default());
    let packed = Packed::new(202);
    packed.put_chunks(&server);
    let dead = format!("http://{}", dead_address());
    let out = packed.out("image.out");
    let output = packed.fetch(&format!("{dead},{}", server.url("")), &out, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fs::read(&out).unwrap() == packed.bytes);
    fs::remove_file(&out).unwrap();

    let output = packed.fetch(&dead, &out, &[]);
    // The node, the request (with the chunk id) and how often it was tried.
    let first_id = packed.manifest().chunks[0].id.to_string();
    assert_failed_without_output(
        &packed,
        &out,
        &output,
        &[&dead, &format!("GET /v1/chunks/{first_id}"), "attempts"],
    );
}

#[test]
fn fetch_refuses_a_chunk_that_does_not_open_with_its_key() {
    let server = Server::start(Launch::default());
    let packed = Packed::new(303);
    packed.put_chunks(&server);
    let mut manifest = packed.manifest();
    let victim = manifest.chunks[3].clone();
    manifest.chunks[3].key = chunkd::crypto::ChunkKey::from_bytes([7; 32]);
    let text = serde_json::to_vec(&manifest).unwrap();
    fs::write(packed.packed.join(MANIFEST_FILE), text).unwrap();
    let out = packed.out("image.out");
    let output = packed.fetch(&server.url(""), &out, &[]);
    let offset = format!("image offset {}", victim.offset_bytes);
    assert_failed_without_output(
        &packed,
        &out,
        &output,
        &[
            &victim.id.to_string(),
            &offset,
            "does not open with its key",
        ],
    );
}

#[test]
fn fetch_refuses_bytes_that_are_not_the_chunk_asked_for() {
    let packed = Packed::new(404);
    let node = FakeNode::start(|_, _, _| (200, vec![], b"not the chunk".to_vec()));
    let out = packed.out("image.out");
    let output = packed.fetch(&node.url(), &out, &[]);
    let actual = id_of(b"not the chunk");
    assert_failed_without_output(
        &packed,
        &out,
        &output,
        &[&node.url(), "came back corrupt", &actual],
    );
}

#[test]
fn a_missing_chunk_is_not_retried_and_is_named() {
    let packed = Packed::new(505);
    let node = FakeNode::start(|_, _, _| (404, vec![], br#"{"error":"no such chunk"}"#.to_vec()));
    let out = packed.out("image.out");
    let output = packed.fetch(&node.url(), &out, &["--parallel", "1"]);
    let first_id = packed.manifest().chunks[0].id.to_string();
    assert_failed_without_output(
        &packed,
        &out,
        &output,
        &[
            &first_id,
            "answered 404 Not Found: no such chunk",
            "(after 1 attempt)",
        ],
    );
    assert_eq!(node.requests(), [format!("GET /v1/chunks/{first_id}")]);
}

#[test]
fn a_busy_node_is_retried_after_the_time_it_asks_for() {
    let packed = Packed::new(606);
    let chunks = packed.chunk_files();
    let busy_once = std::sync::atomic::AtomicBool::new(true);
    let node = FakeNode::start(move |_, path, _| {
        if busy_once.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return (
                503,
                vec![("Retry-After", "1".into())],
                b"{\"error\":\"starting\"}".to_vec(),
            );
        }
        let id = path.rsplit('/').next().unwrap_or_default();
        let body = chunks.iter().find(|c| id_of(c) == id).cloned();
        body.map_or((404, vec![], vec![]), |b| (200, vec![], b))
    });
    let out = packed.out("image.out");
    let started = Instant::now();
    let output = packed.fetch(&node.url(), &out, &["--parallel", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert!(fs::read(&out).unwrap() == packed.bytes);
    // Three distinct chunks, the first asked twice.
    assert_eq!(node.requests().len(), 4, "{:?}", node.requests());
}

#[test]
fn push_fails_when_the_node_still_lacks_a_chunk_after_the_upload() {
    let packed = Packed::new(707);
    let manifest = packed.manifest();
    let lost = manifest.chunks[0].id;
    let node = FakeNode::start(move |method, path, _| {
        if method == "PUT" && path.starts_with("/v1/manifests/") {
            let answer = serde_json::json!({"chunks": 4, "distinct": 3, "missing": [lost]});
            (200, vec![], answer.to_string().into_bytes())
        } else {
            (201, vec![], vec![])
        }
    });
    let output = chunkd(&[
        "push",
        path_str(&packed.packed),
        "--node",
        &node.url(),
        "--quiet",
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "still names 1 chunk the node does not hold after the upload (first: {lost})"
        )),
        "{message}"
    );
    let requests = node.requests();
    assert_eq!(
        requests.first().map(String::as_str),
        Some("PUT /v1/manifests/image.packed")
    );
    assert_eq!(requests[1], format!("PUT /v1/chunks/{lost}"));
    assert_eq!(requests.len(), 3, "{requests:?}");
}

#[test]
fn push_needs_a_valid_manifest_name() {
    let packed = Packed::of(chunk_bytes(808, 1000), "my image");
    let dead = format!("http://{}", dead_address());
    let output = chunkd(&["push", path_str(&packed.packed), "--node", &dead]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("give --name"),
        "{}",
        stderr(&output)
    );
    let output = chunkd(&[
        "push",
        path_str(&packed.packed),
        "--node",
        &dead,
        "--name",
        ".x",
    ]);
    assert!(
        stderr(&output).contains("cannot start with '.'"),
        "{}",
        stderr(&output)
    );
}

/// `{"chunks": [...]}` of a manifest on `server`, as ids.
fn stored_manifest(server: &Server, name: &str) -> Vec<String> {
    let response = get(server.addr, &format!("/v1/manifests/{name}"), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    let chunks = json["chunks"].as_array().expect("a chunks array");
    chunks
        .iter()
        .map(|c| c.as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn push_uploads_only_what_the_node_lacks() {
    let server = Server::start(Launch::default());
    let packed = Packed::new(909);
    let push = || {
        run_ok(&[
            "push",
            path_str(&packed.packed),
            "--node",
            &server.url(""),
            "--quiet",
        ])
    };
    let said = push();
    assert!(said.contains("pushed image.packed to http://"), "{said}");
    assert!(said.contains("4 chunks, 3 distinct, 3 uploaded"), "{said}");
    let ids: Vec<String> = packed
        .manifest()
        .chunks
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(stored_manifest(&server, "image.packed"), ids);
    for id in &ids {
        assert_eq!(
            get(server.addr, &format!("/v1/chunks/{id}"), &[]).status,
            200
        );
    }
    let said = push();
    assert!(
        said.contains("4 chunks, 3 distinct, 0 uploaded (0 bytes)"),
        "{said}"
    );
    // A chunk the node lost is the only one sent again.
    let gone = request(
        server.addr,
        "DELETE",
        &format!("/v1/chunks/{}", ids[3]),
        &[],
        b"",
    );
    assert_eq!(gone.status, 204);
    let said = push();
    assert!(said.contains("3 distinct, 1 uploaded"), "{said}");
}

#[test]
fn push_sends_the_write_token_and_pack_pushes_with_node() {
    let server = Server::start(Launch::args(&["--write-token", "sesame"]));
    let packed = Packed::new(1010);
    let url = server.url("");
    let output = chunkd(&["push", path_str(&packed.packed), "--node", &url, "--quiet"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("answered 401 Unauthorized"),
        "{}",
        stderr(&output)
    );
    let said = run_ok(&[
        "push",
        path_str(&packed.packed),
        "--node",
        &url,
        "--token",
        "sesame",
        "--name",
        "other",
    ]);
    assert!(said.contains("pushed other to"), "{said}");

    let image = packed.dir.path().join("image");
    let out = packed.dir.path().join("repacked");
    let said = run_ok(&[
        "pack",
        path_str(&image),
        "--out",
        path_str(&out),
        "--node",
        &url,
        "--token",
        "sesame",
        "--quiet",
    ]);
    assert!(said.contains("packed "), "{said}");
    // Same chunks as `other`: nothing to upload, and a second manifest now names them.
    assert!(said.contains("pushed repacked to"), "{said}");
    assert!(said.contains("0 uploaded"), "{said}");
    assert_eq!(
        stored_manifest(&server, "repacked"),
        stored_manifest(&server, "other")
    );
}

#[test]
fn a_node_answering_5xx_hands_the_request_to_the_next_which_then_comes_first() {
    let packed = Packed::new(1111);
    let chunks = packed.chunk_files();
    let broken = FakeNode::start(|_, _, _| (500, vec![], br#"{"error":"disk on fire"}"#.to_vec()));
    let good = FakeNode::start(move |_, path, _| {
        let id = path.rsplit('/').next().unwrap_or_default();
        let body = chunks.iter().find(|c| id_of(c) == id).cloned();
        body.map_or((404, vec![], vec![]), |b| (200, vec![], b))
    });
    let out = packed.out("image.out");
    let nodes = format!("{},{}", broken.url(), good.url());
    let output = packed.fetch(&nodes, &out, &["--parallel", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fs::read(&out).unwrap() == packed.bytes);
    // One request met the broken node; once the second answered, later ones start there.
    assert_eq!(broken.requests().len(), 1, "{:?}", broken.requests());
    assert_eq!(good.requests().len(), 3, "{:?}", good.requests());
}
