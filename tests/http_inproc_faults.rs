//! The store faults HTTP can surface, in-process on the simulated engine: corrupt shards
//! and lost or offline devices (503, and never a wrong byte), bit flips on read (every
//! answer is the chunk's exact bytes or an error), failed or torn shard writes (503,
//! nothing stored), full devices (507 with `Retry-After` without eviction; with it, a full
//! node evicts and keeps taking PUTs);
//! `/readyz` says why the node cannot serve. Other chunks and sound ranges keep being
//! served.

mod inproc;

use chunkd::erasure::{Layout, Scheme};
use chunkd::store::DeviceState;
use chunkd::store::device::sim::FaultPlan;
use inproc::{Client, TestNode, VERSIONS, Version, chunk_bytes, chunk_path, id_of, run};

/// Spans all four data shards under 4 + 1 (75,001 bytes each, in 77,824-byte shards).
const CHUNK_LEN: usize = 300_001;

#[test]
fn two_corrupt_shards_of_a_chunk_answer_503_never_wrong_bytes() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(10, CHUNK_LEN);
        let bystander = chunk_bytes(11, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        client.put_new(&bystander).await;
        // Damage data shards 0 and 1: one more than the 4 + 1 scheme can lose.
        for shard in 0..2 {
            node.corrupt_shard(&id, shard, 1000);
        }
        let path = chunk_path(&id);
        let layout = Layout::new(Scheme::DEFAULT, CHUNK_LEN as u64);
        let sound = layout.chunk_bytes_of(2);
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            let message = client.get(&path, &[]).await.assert_error(503);
            assert!(message.contains("shards"), "{message}");
            // A range within a damaged shard cannot be served either.
            let range = [("Range", "bytes=500-1500")];
            client.get(&path, &range).await.assert_error(503);
            let ranges = [("Range", "bytes=0-9,100000-100009")];
            client.get(&path, &ranges).await.assert_error(503);
            // A range wholly in a sound shard still is, with the right bytes.
            let range = format!("bytes={}-{}", sound.start + 10, sound.start + 4000);
            let ranged = client.get(&path, &[("Range", &range)]).await;
            assert_eq!(ranged.status, 206);
            let expected = &bytes[sound.start as usize + 10..=sound.start as usize + 4000];
            assert!(ranged.body == expected);
            // /meta counts the sound shards.
            let meta = client.get(&format!("{path}/meta"), &[]).await;
            assert_eq!(meta.status, 200);
            assert_eq!(meta.json()["shards"]["healthy"], 3);
            // Other chunks are untouched.
            let other = client.get(&chunk_path(&id_of(&bystander)), &[]).await;
            assert_eq!(other.status, 200);
            assert!(other.body == bystander);
        }
        assert!(node.store().health().chunks_unreadable >= 1);
    });
}

#[test]
fn one_corrupt_shard_is_rebuilt_and_the_exact_bytes_served() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http2).await;
        let bytes = chunk_bytes(12, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        node.corrupt_shard(&id, 1, 1000);
        let path = chunk_path(&id);
        let whole = client.get(&path, &[]).await;
        assert_eq!(whole.status, 200);
        assert!(whole.body == bytes);
        let ranged = client.get(&path, &[("Range", "bytes=77000-79999")]).await;
        assert_eq!(ranged.status, 206);
        assert!(ranged.body == bytes[77_000..80_000]);
        assert!(node.store().health().shards_rebuilt >= 1);
    });
}

#[test]
fn two_lost_devices_answer_503_for_reads_and_writes() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(13, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        let path = chunk_path(&id);
        // One lost device: its shards are rebuilt from the others.
        node.shard(&id, 0).0.set_lost(true);
        let one_lost = client.get(&path, &[]).await;
        assert_eq!(one_lost.status, 200);
        assert!(one_lost.body == bytes);
        // Two: the chunk cannot be read now (it may be once a device is back).
        node.shard(&id, 2).0.set_lost(true);
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            client.get(&path, &[]).await.assert_error(503);
            let range = [("Range", "bytes=0-99999")];
            client.get(&path, &range).await.assert_error(503);
            let status = client.put(&chunk_bytes(14, 100_000), &[]).await.status;
            assert!(
                status == 503 || status == 507,
                "a PUT with two of five devices lost: {status}"
            );
        }
        // The devices come back: the chunk is served whole again.
        node.shard(&id, 0).0.set_lost(false);
        node.shard(&id, 2).0.set_lost(false);
        let back = client.get(&path, &[]).await;
        assert_eq!(back.status, 200);
        assert!(back.body == bytes);
    });
}

#[test]
fn two_offline_devices_answer_503_with_the_counts_in_the_message() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(15, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        let path = chunk_path(&id);
        for shard in [1, 3] {
            let device = node.shard(&id, shard).1.device;
            node.store().set_device_state(device, DeviceState::Offline);
        }
        client.get(&path, &[]).await.assert_error(503);
        let message = client
            .put(&chunk_bytes(16, 1000), &[])
            .await
            .assert_error(503);
        assert!(message.contains("3 of 4"), "{message}");
    });
}

#[test]
fn bit_flips_on_read_never_reach_a_client() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let chunks: Vec<Vec<u8>> = (0..4).map(|n| chunk_bytes(20 + n, CHUNK_LEN)).collect();
        for bytes in &chunks {
            client.put_new(bytes).await;
        }
        node.engine.set_faults(FaultPlan {
            read_bit_flip_ppm: 300_000,
            ..FaultPlan::default()
        });
        let mut served = 0;
        for round in 0..40usize {
            let bytes = &chunks[round % chunks.len()];
            let path = chunk_path(&id_of(bytes));
            let first = (round * 7919) % (CHUNK_LEN - 5000);
            let range = format!("bytes={first}-{}", first + 4999);
            let (headers, expected): (&[(&str, &str)], &[u8]) = if round % 2 == 0 {
                (&[], bytes)
            } else {
                (&[("Range", &range)], &bytes[first..first + 5000])
            };
            let response = client.get(&path, headers).await;
            match response.status {
                200 | 206 => {
                    assert!(response.body == expected, "round {round}: wrong bytes");
                    served += 1;
                }
                503 => {
                    response.assert_error(503);
                }
                other => panic!("round {round}: status {other}"),
            }
        }
        assert!(served > 0, "no read got through");
        node.engine.set_faults(FaultPlan::default());
    });
}

#[test]
fn a_full_node_answers_507_and_keeps_serving_what_it_has() {
    run(async {
        // A store, not a cache: without eviction a full node refuses.
        let node = TestNode::with_devices(&["--no-eviction"], 8);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let mut stored = Vec::new();
        let mut full = None;
        for n in 0..64u64 {
            let bytes = chunk_bytes(1000 + n, 1 << 20);
            let response = client.put(&bytes, &[]).await;
            if response.status != 201 {
                full = Some(response);
                break;
            }
            stored.push(bytes);
        }
        let full = full.expect("five 8 MiB devices cannot hold 64 MiB of chunks");
        let message = full.assert_error(507);
        assert!(message.contains("no space"), "{message}");
        // Nothing quarantined: space returns only after deletes, a quarantine later.
        assert_eq!(full.header("retry-after"), Some("60"));
        assert!(stored.len() >= 10, "only {} chunks fitted", stored.len());
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            for bytes in [&stored[0], stored.last().unwrap()] {
                let response = client.get(&chunk_path(&id_of(bytes)), &[]).await;
                assert_eq!(response.status, 200);
                assert!(response.body == *bytes);
            }
            let rejected = chunk_bytes(1000 + stored.len() as u64, 1 << 20);
            let path = chunk_path(&id_of(&rejected));
            client.get(&path, &[]).await.assert_error(404);
            client.put(&rejected, &[]).await.assert_error(507);
        }
    });
}

#[test]
fn a_put_whose_shard_writes_fail_answers_503_and_stores_nothing() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(30, CHUNK_LEN);
        let path = chunk_path(&id_of(&bytes));
        for plan in [
            FaultPlan {
                write_eio_ppm: 1_000_000,
                ..FaultPlan::default()
            },
            FaultPlan {
                torn_write_ppm: 1_000_000,
                ..FaultPlan::default()
            },
        ] {
            node.engine.set_faults(plan);
            let message = client.put(&bytes, &[]).await.assert_error(503);
            assert!(message.contains("EIO"), "{plan:?}: {message}");
            node.engine.set_faults(FaultPlan::default());
            client.get(&path, &[]).await.assert_error(404);
            assert_eq!(node.store().chunk_count(), 0);
        }
        // Once the devices write again, the same PUT stores the chunk.
        assert_eq!(client.put(&bytes, &[]).await.status, 201);
        let read = client.get(&path, &[]).await;
        assert!(read.status == 200 && read.body == bytes);
    });
}

#[test]
fn space_freed_by_deletes_is_reused_once_no_read_uses_it() {
    run(async {
        let node = TestNode::with_devices(&["--no-eviction"], 8);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let mut stored = Vec::new();
        let mut n = 0u64;
        loop {
            let bytes = chunk_bytes(2000 + n, 1 << 20);
            n += 1;
            if client.put(&bytes, &[]).await.status != 201 {
                break;
            }
            stored.push(bytes);
            assert!(n < 64, "five 8 MiB devices fill up");
        }
        for bytes in &stored {
            let path = chunk_path(&id_of(bytes));
            assert_eq!(client.request("DELETE", &path, &[], b"").await.status, 204);
        }
        // No read was in flight: the space is free again at once (see store::grace).
        let capacity = node.store().capacity();
        assert_eq!(capacity.quarantined_bytes, 0, "{capacity:?}");
        assert_eq!(
            client
                .put(&chunk_bytes(2000 + n, 1 << 20), &[])
                .await
                .status,
            201
        );
        let metrics = client.get("/metrics", &[]).await.text();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("chunkd_store_quarantined_bytes ")),
            "{metrics}"
        );
    });
}

#[test]
fn a_full_cache_node_keeps_accepting_puts_by_evicting() {
    run(async {
        let node = TestNode::with_devices(&[], 8);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let chunks: Vec<Vec<u8>> = (0..64).map(|n| chunk_bytes(3000 + n, 1 << 20)).collect();
        for bytes in &chunks {
            assert_eq!(client.put(bytes, &[]).await.status, 201);
        }
        let newest = chunks.last().unwrap();
        let read = client.get(&chunk_path(&id_of(newest)), &[]).await;
        assert!(read.status == 200 && read.body == *newest);
        client
            .get(&chunk_path(&id_of(&chunks[0])), &[])
            .await
            .assert_error(404);
        let metrics = client.get("/metrics", &[]).await.text();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("chunkd_cache_evictions_total{")
                    && l.contains("tier=\"flash\"")
                    && !l.ends_with(" 0")),
            "{metrics}"
        );
    });
}

#[test]
fn readyz_answers_503_with_a_json_reason_when_fewer_than_k_devices_are_usable() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        assert_eq!(client.get("/readyz", &[]).await.status, 200);
        node.store().set_device_state(0, DeviceState::Offline);
        assert_eq!(
            client.get("/readyz", &[]).await.status,
            200,
            "4 of 5 devices serve every chunk under 4 + 1"
        );
        node.store().set_device_state(4, DeviceState::Offline);
        let ready = client.get("/readyz", &[]).await;
        assert_eq!(ready.status, 503);
        assert_eq!(ready.header("content-type"), Some("application/json"));
        assert_eq!(ready.json()["status"], "unavailable");
        let reason = ready.json()["reason"].as_str().unwrap().to_owned();
        assert!(reason.contains("fewer than k usable devices"), "{reason}");
        node.store().set_device_state(4, DeviceState::Online);
        assert_eq!(client.get("/readyz", &[]).await.status, 200);
    });
}

#[test]
fn a_chunk_found_lost_answers_404_is_counted_and_a_put_stores_it_again() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let bytes = chunk_bytes(40, CHUNK_LEN);
        let id = client.put_new(&bytes).await;
        for shard in 0..2 {
            node.corrupt_shard(&id, shard, 1000);
        }
        let path = chunk_path(&id);
        client.get(&path, &[]).await.assert_error(503);
        // The repair (the node's repair thread, run here by hand) finds it lost.
        let local = node.store().local().unwrap();
        local.repair(&id.parse().unwrap()).await.unwrap();
        for version in VERSIONS {
            let mut client = Client::connect(&server, version).await;
            client.get(&path, &[]).await.assert_error(404);
            client
                .get(&format!("{path}/meta"), &[])
                .await
                .assert_error(404);
        }
        let metrics = client.get("/metrics", &[]).await.text();
        assert!(
            metrics.lines().any(|l| l == "chunkd_chunks_lost_total 1"),
            "{metrics}"
        );
        assert_eq!(client.put(&bytes, &[]).await.status, 201);
        let back = client.get(&path, &[]).await;
        assert!(back.status == 200 && back.body == bytes);
    });
}
