//! `chunkd pack`, `unpack` and `inspect`, run as a user runs them: the real binary on
//! real files.

use std::fs;
use std::path::{Path, PathBuf};

use chunkd::image::{MANIFEST_FILE, Manifest};

#[path = "common/binary.rs"]
mod binary;
#[path = "common/seeded.rs"]
mod seeded;

use binary::{chunkd, run_ok};

const CHUNK: usize = 512 * 1024;

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    seeded::xorshift_bytes(seed, len)
}

/// An image of 5 full chunks and a short tail: noise A, a zero chunk, noise A again
/// (a duplicate), two zero chunks, noise B, then a short tail of noise and zeros.
fn image_with_holes_and_repeats() -> Vec<u8> {
    let a = noise(CHUNK, 1);
    let mut tail = noise(1000, 3);
    tail.resize(70_000, 0);
    [
        a.clone(),
        vec![0; CHUNK],
        a,
        vec![0; 2 * CHUNK],
        noise(CHUNK, 2),
        tail,
    ]
    .concat()
}

struct Packed {
    _dir: tempfile::TempDir,
    image: PathBuf,
    out: PathBuf,
    root: PathBuf,
}

fn pack(image_bytes: &[u8], salt: Option<&str>) -> Packed {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.ext4");
    fs::write(&image, image_bytes).unwrap();
    let out = dir.path().join("packed");
    let mut args = vec!["pack", path_str(&image), "--out", path_str(&out)];
    if let Some(salt) = salt {
        args.extend(["--salt", salt]);
    }
    run_ok(&args);
    Packed {
        root: dir.path().to_owned(),
        _dir: dir,
        image,
        out,
    }
}

fn manifest(packed: &Packed) -> Manifest {
    Manifest::read(&packed.out.join(MANIFEST_FILE)).unwrap()
}

#[test]
fn round_trip_with_holes_is_byte_exact() {
    let image = image_with_holes_and_repeats();
    let packed = pack(&image, None);
    let manifest = manifest(&packed);
    assert_eq!(manifest.image_len_bytes, image.len() as u64);
    assert_eq!(manifest.chunks.len(), 4, "A, A, B and the tail are stored");
    assert_eq!(
        manifest.holes.len(),
        2,
        "one lone zero chunk and one merged run of two"
    );
    assert_eq!(manifest.holes[1].len_bytes, 2 * CHUNK as u64);
    assert_eq!(
        fs::read_dir(packed.out.join("chunks")).unwrap().count(),
        3,
        "the repeat is stored once"
    );

    let restored = packed.root.join("restored");
    run_ok(&[
        "unpack",
        path_str(&packed.out),
        "--out",
        path_str(&restored),
    ]);
    assert!(
        fs::read(&restored).unwrap() == image,
        "unpacked image differs"
    );
    assert_eq!(
        fs::read(&packed.image).unwrap(),
        image,
        "pack leaves its input alone"
    );
}

#[test]
fn inspect_reports_sizes_and_dedup() {
    let packed = pack(&image_with_holes_and_repeats(), None);
    let report = run_ok(&["inspect", path_str(&packed.out)]);
    assert!(report.contains("chunks          4\n"), "{report}");
    assert!(report.contains("distinct chunks 3 "), "{report}");
    assert!(report.contains("dedup ratio     1.33x"), "{report}");
    assert!(report.contains("holes           2 runs"), "{report}");
    assert!(report.contains("all present"), "{report}");
}

#[test]
fn packing_twice_gives_the_same_ids_and_another_salt_other_ids() {
    let image = image_with_holes_and_repeats();
    let ids = |m: &Manifest| m.chunks.iter().map(|c| c.id).collect::<Vec<_>>();
    let first = manifest(&pack(&image, None));
    let second = manifest(&pack(&image, None));
    let salted = manifest(&pack(&image, Some("0123abcd")));
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(first, second, "keys and layout are deterministic too");
    assert_eq!(salted.salt, "0123abcd");
    for (plain, other) in ids(&first).iter().zip(ids(&salted).iter()) {
        assert_ne!(plain, other);
    }
}

#[test]
fn empty_and_all_zero_images_round_trip() {
    for image in [Vec::new(), vec![0u8; 3 * CHUNK + 17]] {
        let packed = pack(&image, None);
        assert_eq!(manifest(&packed).chunks.len(), 0);
        let restored = packed.root.join("restored");
        run_ok(&[
            "unpack",
            path_str(&packed.out),
            "--out",
            path_str(&restored),
        ]);
        assert_eq!(fs::read(&restored).unwrap(), image);
    }
}

/// Runs unpack expecting failure; checks the message and that no output was left.
fn unpack_fails(packed: &Packed, expected: &str) {
    let restored = packed.root.join("restored");
    let output = chunkd(&[
        "unpack",
        path_str(&packed.out),
        "--out",
        path_str(&restored),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
    let leftovers: Vec<_> = fs::read_dir(&packed.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the image and the packed dir remain: {leftovers:?}"
    );
}

#[test]
fn a_corrupt_chunk_fails_unpack_naming_it_and_leaves_no_output() {
    let packed = pack(&image_with_holes_and_repeats(), None);
    let entry = manifest(&packed).chunks[3].clone();
    assert_eq!(entry.offset_bytes, 6 * CHUNK as u64, "the tail chunk");
    let victim = entry.id.to_string();
    let path = packed.out.join("chunks").join(&victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    unpack_fails(
        &packed,
        &format!("chunk {victim} (image offset 3145728) is corrupt"),
    );
}

#[test]
fn a_missing_chunk_fails_unpack_naming_it() {
    let packed = pack(&image_with_holes_and_repeats(), None);
    let victim = manifest(&packed).chunks[0].id.to_string();
    fs::remove_file(packed.out.join("chunks").join(&victim)).unwrap();
    unpack_fails(
        &packed,
        &format!("chunk {victim} (image offset 0) is missing"),
    );
}

#[test]
fn a_wrong_key_fails_unpack_naming_the_chunk() {
    let packed = pack(&image_with_holes_and_repeats(), None);
    let path = packed.out.join(MANIFEST_FILE);
    let mut manifest = manifest(&packed);
    manifest.chunks[1].key = manifest.chunks[3].key.clone();
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let victim = manifest.chunks[1].id;
    unpack_fails(
        &packed,
        &format!("chunk {victim} (image offset 1048576) does not open with its key"),
    );
}

#[test]
fn a_manifest_that_does_not_tile_the_image_is_refused() {
    let packed = pack(&image_with_holes_and_repeats(), None);
    let path = packed.out.join(MANIFEST_FILE);
    let mut manifest = manifest(&packed);
    manifest.holes.remove(0);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    unpack_fails(
        &packed,
        "not a valid image manifest: pieces do not tile the image",
    );
}

#[test]
fn bad_arguments_are_clear_errors() {
    let output = chunkd(&["pack", "/nonexistent/image", "--out", "/tmp/x"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/image: No such file"));
    let output = chunkd(&["pack", "/dev/null", "--out", "/tmp/x", "--salt", "zz"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not hex"));
}
