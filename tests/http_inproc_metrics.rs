//! `/metrics` as a fresh node exports it, in-process on the simulated engine (its own test
//! binary, so the process-wide recorder holds this file's traffic only): the build and
//! process metrics, every series with known labels present at zero before its first event
//! (the GC series of issue 13 among them),
//! latency by method as well as route, and the scrub's progress.

mod inproc;

use inproc::{Client, TestNode, Version, chunk_bytes, chunk_path, id_of, metric, run};

fn has_series(text: &str, series: &str) -> bool {
    text.lines().any(|line| line.starts_with(series))
}

/// Issue 11, finding 15.
#[test]
fn a_fresh_node_exports_build_process_and_zeroed_series() {
    run(async {
        let node = TestNode::start(&[]);
        let server = node.server();
        let mut client = Client::connect(&server, Version::Http1).await;
        let text = client.get("/metrics", &[]).await.text();
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            metric(&text, "chunkd_build_info", &[("version", version)]),
            1.0,
            "{text}"
        );
        assert!(
            metric(&text, "process_resident_memory_bytes", &[]) > 0.0,
            "{text}"
        );
        assert!(metric(&text, "process_open_fds", &[]) > 0.0, "{text}");
        assert!(has_series(&text, "process_cpu_seconds_total"), "{text}");
        // Present at zero before the first miss, timeout or PUT.
        for series in [
            r#"chunkd_store_lookups_total{result="miss"} 0"#,
            r#"chunkd_connections_closed_total{reason="header_timeout"} 0"#,
            r#"chunkd_http_requests_total{route="chunk",method="PUT",status="201"} 0"#,
            r#"chunkd_http_request_duration_seconds_count{route="chunk",method="DELETE"} 0"#,
            "chunkd_store_scrub_passes_total 0",
            "chunkd_store_scrub_pass_chunks 0",
            // Issue 13: manifests and GC.
            "chunkd_manifests 0",
            "chunkd_referenced_chunks 0",
            "chunkd_referenced_stored_chunks 0",
            "chunkd_referenced_bytes 0",
            "chunkd_pinned_chunks 0",
            "chunkd_pinned_bytes 0",
            "chunkd_expired_chunks 0",
            "chunkd_expired_bytes 0",
            "chunkd_gc_sweeps_total 0",
            "chunkd_gc_swept_chunks_total 0",
            "chunkd_gc_swept_bytes_total 0",
            "chunkd_gc_expired_reads_total 0",
            "chunkd_gc_sweep_duration_seconds_count 0",
            "chunkd_gc_last_sweep_duration_seconds 0",
            r#"chunkd_http_requests_total{route="manifest",method="PUT",status="201"} 0"#,
            r#"chunkd_http_requests_total{route="gc",method="POST",status="200"} 0"#,
        ] {
            assert!(has_series(&text, series), "{series} in:\n{text}");
        }

        let id = client.put_new(&chunk_bytes(7, 10_000)).await;
        assert_eq!(client.get(&chunk_path(&id), &[]).await.status, 200);
        assert_eq!(
            client.get(&chunk_path(&id_of(b"absent")), &[]).await.status,
            404
        );
        let text = client.get("/metrics", &[]).await.text();
        let count = |method: &str| {
            metric(
                &text,
                "chunkd_http_request_duration_seconds_count",
                &[("route", "chunk"), ("method", method)],
            )
        };
        assert_eq!((count("PUT"), count("GET")), (1.0, 2.0), "{text}");
        assert_eq!(
            metric(&text, "chunkd_store_lookups_total", &[("result", "miss")]),
            1.0
        );
    });
}
