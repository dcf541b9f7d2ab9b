//! The memory tier through HTTP, in-process on the simulated engine: hits served
//! byte-exact (whole, one range, several ranges, HEAD, 304, 416) with every device read
//! failing — proof that a hit reads no device; DELETE drops the memory copy; `/meta` lists
//! the tiers; `--memory-admission` is honoured; the tier's byte and entry bounds hold
//! throughout concurrent GETs and PUTs on every core; a working set 3× the bound streamed
//! through PUT and GET keeps memory within its bound (hit ratio printed).

mod inproc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chunkd::cache::memory::MemoryStats;
use chunkd::http::{CoreServer, Node};
use chunkd::store::device::sim::{FaultPlan, SimEngine};
use inproc::{
    Client, TestNode, VERSIONS, Version, check_parts, chunk_bytes, chunk_path, id_of,
    parse_multipart, run,
};

/// Spans all four data shards under 4 + 1.
const CHUNK_LEN: usize = 300_001;

fn stats(node: &TestNode) -> MemoryStats {
    node.node.memory().expect("the memory tier is on").stats()
}

/// Every device read fails from now on (EIO): only the memory tier can answer.
fn fail_every_read(node: &TestNode) {
    node.engine.set_faults(FaultPlan {
        read_eio_ppm: 1_000_000,
        ..FaultPlan::default()
    });
}

#[test]
fn hits_are_served_from_memory_byte_exact_without_reading_a_device() {
    run(async {
        let node = TestNode::start(&["--memory-cache", "64M"]);
        let server = node.server();
        let bytes = chunk_bytes(1, CHUNK_LEN);
        let id = Client::connect(&server, Version::Http1)
            .await
            .put_new(&bytes)
            .await;
        assert_eq!(stats(&node).chunks, 1, "admitted on PUT (the default)");
        fail_every_read(&node);
        let path = chunk_path(&id);
        let before = stats(&node);
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let whole = client.get(&path, &[]).await;
            assert_eq!(whole.status, 200, "{version:?}: {}", whole.text());
            assert!(whole.body == bytes, "{version:?}: whole chunk differs");
            let one = client.get(&path, &[("range", "bytes=77800-77900")]).await;
            assert_eq!(one.status, 206);
            assert_eq!(one.body, &bytes[77_800..=77_900]);
            assert_eq!(
                one.header("content-range"),
                Some("bytes 77800-77900/300001")
            );
            let many = client
                .get(&path, &[("range", "bytes=0-9,200000-200009,-5")])
                .await;
            assert_eq!(many.status, 206);
            let content_type = many.header("content-type").unwrap().to_owned();
            let parts = parse_multipart(&content_type, &many.body);
            check_parts(
                &parts,
                &bytes,
                &[(0, 9), (200_000, 200_009), (299_996, 300_000)],
            );
            let head = client.request("HEAD", &path, &[], b"").await;
            assert_eq!(head.status, 200);
            assert_eq!(head.header("content-length"), Some("300001"));
            let etag = format!("\"{id}\"");
            let not_modified = client.get(&path, &[("if-none-match", &etag)]).await;
            assert_eq!(not_modified.status, 304);
            let unsatisfiable = client.get(&path, &[("range", "bytes=400000-")]).await;
            assert_eq!(unsatisfiable.status, 416);
        }
        let after = stats(&node);
        assert_eq!(
            after.hits - before.hits,
            12,
            "six answers a protocol, all hits"
        );
        assert_eq!(after.misses, before.misses);
        // The proof that the devices are failing: a chunk not in memory gets a 503.
        let other = chunk_bytes(2, CHUNK_LEN);
        node.engine.set_faults(FaultPlan::default());
        let mut client = Client::connect(&server, Version::Http1).await;
        let other_id = client.put_new(&other).await;
        node.node
            .memory()
            .unwrap()
            .remove(&other_id.parse().unwrap());
        fail_every_read(&node);
        let failed = client.get(&chunk_path(&other_id), &[]).await;
        assert_eq!(failed.status, 503, "{}", failed.text());
    });
}

#[test]
fn delete_drops_the_memory_copy_and_meta_lists_the_tiers() {
    run(async {
        let node = TestNode::start(&["--memory-cache", "64M"]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(3, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        let meta = client.get(&format!("{}/meta", chunk_path(&id)), &[]).await;
        assert_eq!(meta.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&meta.body).unwrap();
        assert_eq!(json["tiers"], serde_json::json!(["memory", "flash"]));
        assert_eq!(json["len"], 300_001);
        assert_eq!(client.get(&chunk_path(&id), &[]).await.status, 200);
        let deleted = client.request("DELETE", &chunk_path(&id), &[], b"").await;
        assert_eq!(deleted.status, 204);
        assert_eq!(stats(&node).chunks, 0);
        assert_eq!(client.get(&chunk_path(&id), &[]).await.status, 404);
        let head = client.request("HEAD", &chunk_path(&id), &[], b"").await;
        assert_eq!(head.status, 404);
        let meta = client.get(&format!("{}/meta", chunk_path(&id)), &[]).await;
        assert_eq!(meta.status, 404);
        let again = client.request("DELETE", &chunk_path(&id), &[], b"").await;
        assert_eq!(again.status, 404);
    });
}

#[test]
fn admission_follows_the_setting() {
    run(async {
        // (setting, admitted by PUT, admitted by a second whole GET from flash)
        for (setting, on_put, on_hit) in [
            ("put,hit", true, true),
            ("put", true, false),
            ("hit", false, true),
            ("none", false, false),
        ] {
            let node = TestNode::start(&["--memory-cache", "64M", "--memory-admission", setting]);
            let server = node.server();
            let mut client = Client::connect(&server, Version::Http1).await;
            let bytes = chunk_bytes(4, CHUNK_LEN);
            let id = client.put_new(&bytes).await;
            assert_eq!(stats(&node).chunks, u64::from(on_put), "{setting}: PUT");
            let path = chunk_path(&id);
            let range = client.get(&path, &[("range", "bytes=0-99")]).await;
            assert_eq!(range.body, &bytes[..100]);
            assert_eq!(
                stats(&node).chunks,
                u64::from(on_put),
                "{setting}: a range never admits"
            );
            let whole = client.get(&path, &[]).await;
            assert!(whole.body == bytes);
            assert_eq!(
                stats(&node).chunks,
                u64::from(on_put),
                "{setting}: first GET"
            );
            let whole = client.get(&path, &[]).await;
            assert!(whole.body == bytes);
            assert_eq!(
                stats(&node).chunks,
                u64::from(on_put || on_hit),
                "{setting}: second GET"
            );
            let meta = client.get(&format!("{path}/meta"), &[]).await;
            let json: serde_json::Value = serde_json::from_slice(&meta.body).unwrap();
            let tiers = if on_put || on_hit {
                serde_json::json!(["memory", "flash"])
            } else {
                serde_json::json!(["flash"])
            };
            assert_eq!(json["tiers"], tiers, "{setting}");
        }
        let off = TestNode::start(&["--memory-cache", "0"]);
        assert!(off.node.memory().is_none(), "0 turns the tier off");
    });
}

/// Samples the tier until `stop`, asserting its bounds each time; returns the samples.
fn watch_bounds(node: &Node<SimEngine>, stop: &AtomicBool) -> u64 {
    let memory = node.memory().expect("the memory tier is on");
    let mut samples = 0;
    while !stop.load(Ordering::Relaxed) || samples == 0 {
        let s = memory.stats();
        assert!(
            s.charged_bytes <= memory.capacity_bytes(),
            "{} bytes charged over the {}-byte bound",
            s.charged_bytes,
            memory.capacity_bytes()
        );
        assert!(s.bytes <= s.charged_bytes);
        assert!(s.chunks <= memory.max_entries(), "{} entries", s.chunks);
        samples += 1;
        std::thread::yield_now();
    }
    samples
}

/// One core's load: `rounds` passes over its chunks, PUT then GET (whole or a range),
/// every body checked.
async fn core_load(server: &CoreServer<SimEngine>, chunks: &[Vec<u8>], rounds: usize) {
    let mut clients = Vec::new();
    for version in [Version::Http1, Version::Http2, Version::Http1] {
        clients.push(Client::connect(server, version).await);
    }
    for round in 0..rounds {
        for (i, bytes) in chunks.iter().enumerate() {
            let client = &mut clients[(i + round) % 3];
            if round == 0 {
                let put = client.put(bytes, &[]).await;
                assert!(put.status == 201 || put.status == 200, "{}", put.text());
            }
            let path = chunk_path(&id_of(bytes));
            if (i + round) % 4 == 0 {
                let got = client.get(&path, &[("range", "bytes=100-4195")]).await;
                assert_eq!(got.body, &bytes[100..4196]);
            } else {
                let got = client.get(&path, &[]).await;
                assert!(got.status == 200 && got.body == *bytes, "chunk {i} differs");
            }
        }
    }
}

#[test]
fn memory_stays_within_its_bounds_under_concurrent_gets_and_puts_on_every_core() {
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    // 2 MiB of memory for 3 cores' worth of 96 chunks of 16-48 KiB (~9 MiB in all).
    let node = TestNode::with_devices(&["--memory-cache", "2M"], 64);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| watch_bounds(&node.node, &stop));
        let loads: Vec<_> = (0..cores)
            .map(|core| {
                let node = Arc::clone(&node.node);
                scope.spawn(move || {
                    let chunks: Vec<Vec<u8>> = (0..96)
                        .map(|i| {
                            let seed = 1000 + (core * 96 + i) as u64;
                            chunk_bytes(seed, 16_384 + (i % 3) * 16_384)
                        })
                        .collect();
                    run(async move {
                        let server = CoreServer::new(node, core);
                        core_load(&server, &chunks, 3).await;
                    });
                })
            })
            .collect();
        for load in loads {
            load.join().expect("a core's load");
        }
        stop.store(true, Ordering::Relaxed);
        let samples = sampler.join().expect("the sampler");
        assert!(samples > 0);
    });
    let s = stats(&node);
    assert!(s.evictions > 0, "the load overflowed the tier: {s:?}");
    assert!(s.hits > 0, "{s:?}");
}

#[test]
fn a_working_set_three_times_the_bound_streams_through_within_it() {
    // 4 MiB of memory, a working set of 12 MiB: 96 chunks of 128 KiB, read with a skew
    // (a quarter of them take half the reads).
    let node = TestNode::with_devices(&["--memory-cache", "4M"], 64);
    let stop = AtomicBool::new(false);
    let chunks: Vec<Vec<u8>> = (0..96).map(|i| chunk_bytes(5000 + i, 128 << 10)).collect();
    let capacity = node.node.memory().unwrap().capacity_bytes();
    let working_set: usize = chunks.iter().map(Vec::len).sum();
    assert!(working_set as u64 >= 3 * capacity);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| watch_bounds(&node.node, &stop));
        run(async {
            let server = node.server();
            let mut client = Client::connect(&server, Version::Http1).await;
            for bytes in &chunks {
                let put = client.put(bytes, &[]).await;
                assert_eq!(put.status, 201, "no PUT refused: {}", put.text());
            }
            let mut pick = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..1500 {
                pick ^= pick << 13;
                pick ^= pick >> 7;
                pick ^= pick << 17;
                let i = if pick.is_multiple_of(2) {
                    (pick >> 8) as usize % 24
                } else {
                    (pick >> 8) as usize % 96
                };
                let got = client.get(&chunk_path(&id_of(&chunks[i])), &[]).await;
                assert!(got.status == 200 && got.body == chunks[i], "chunk {i}");
            }
        });
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("the sampler");
    });
    let s = stats(&node);
    let ratio = s.hits as f64 / (s.hits + s.misses) as f64;
    println!(
        "memory tier, working set 3x its bound: {} hits, {} misses, hit ratio {ratio:.3}, {} evictions, {} chunks held",
        s.hits, s.misses, s.evictions, s.chunks
    );
    assert!(s.evictions > 0 && s.hits > 0, "{s:?}");
}

/// Hits served from memory count for flash's eviction policy too: a chunk read only from
/// memory is not the first to leave flash when a stream of new chunks fills it (else the
/// hottest set would be gone from flash whenever memory evicts it, or after a restart).
#[test]
fn a_chunk_hot_in_memory_stays_on_flash_while_new_chunks_stream_through() {
    run(async {
        let node = TestNode::with_devices(&["--memory-cache", "8M"], 8);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let hot = chunk_bytes(7000, 1 << 20);
        let hot_id = client.put_new(&hot).await;
        for _ in 0..3 {
            let read = client.get(&chunk_path(&hot_id), &[]).await;
            assert!(read.status == 200 && read.body == hot);
        }
        // Four times the flash's capacity of chunks read once.
        for n in 0..128 {
            let bytes = chunk_bytes(7001 + n, 1 << 20);
            assert_eq!(client.put(&bytes, &[]).await.status, 201);
        }
        let flash = node.store().flash_stats();
        let evicted = flash.evicted_watermark + flash.evicted_put;
        assert!(evicted > 64, "flash evicted {evicted}: {flash:?}");
        let meta = client
            .get(&format!("{}/meta", chunk_path(&hot_id)), &[])
            .await;
        assert_eq!(meta.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&meta.body).unwrap();
        assert!(
            json["tiers"].as_array().unwrap().contains(&"flash".into()),
            "the hot chunk left flash: {json}"
        );
    });
}

/// A GET of a chunk no tier holds is a miss of both tiers (answered from the index alone,
/// it never reaches a flash read, which is where misses were counted before).
#[test]
fn a_get_of_an_absent_chunk_counts_a_flash_miss() {
    run(async {
        let node = TestNode::start(&["--memory-cache", "8M"]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let absent = id_of(&chunk_bytes(8000, CHUNK_LEN));
        for _ in 0..3 {
            client
                .get(&chunk_path(&absent), &[])
                .await
                .assert_error(404);
        }
        assert_eq!(node.store().flash_stats().misses, 3);
        assert_eq!(stats(&node).misses, 3);
    });
}

/// A GET of several ranges is one flash hit (for the metrics and the eviction policy),
/// not one per range: else one multipart request would promote a chunk to main.
#[test]
fn a_multipart_get_is_one_flash_hit() {
    run(async {
        let node = TestNode::start(&["--memory-cache", "0"]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(8100, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        let before = node.store().flash_stats().hits;
        let read = client
            .get(
                &chunk_path(&id),
                &[("range", "bytes=0-9,1000-1009,200000-200009")],
            )
            .await;
        assert_eq!(read.status, 206);
        assert_eq!(node.store().flash_stats().hits, before + 1);
    });
}
