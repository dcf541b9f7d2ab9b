//! Tests of a connection's watchdog (`conn.rs`): header, idle and send timeouts, the
//! HTTP/2 handshake followed byte by byte.

use super::*;

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

const TIMEOUTS: Timeouts = Timeouts {
    header: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    send: Duration::from_secs(30),
};

/// The reason the watchdog gives, and the whole seconds it took.
async fn cut(state: &ConnState) -> (CutReason, u64) {
    let started = Instant::now();
    let reason = state.watchdog(TIMEOUTS).await;
    (reason, started.elapsed().as_secs())
}

#[test]
fn a_started_header_section_times_out_before_the_idle_timeout() {
    run(async {
        let state = ConnState::new();
        state.on_read(b"GET / HT");
        assert_eq!(cut(&state).await, ("header_timeout", 10));
    });
}

#[test]
fn a_connection_that_sends_nothing_gets_the_header_timeout() {
    run(async {
        let state = ConnState::new();
        assert_eq!(cut(&state).await, ("header_timeout", 10));
    });
}

#[test]
fn an_idle_keep_alive_connection_lasts_the_idle_timeout() {
    run(async {
        let state = ConnState::new();
        state.on_read(b"GET / HTTP/1.1\r\n\r\n");
        state.request_started();
        state.request_finished();
        assert_eq!(cut(&state).await, ("idle_timeout", 60));
    });
}

#[test]
fn a_request_in_flight_leaves_the_handler_time_to_answer_a_stalled_body() {
    run(async {
        let state = ConnState::new();
        state.on_read(b"PUT /v1/chunks/x HTTP/1.1\r\n\r\n");
        state.request_started();
        let started = Instant::now();
        assert_eq!(state.watchdog(TIMEOUTS).await, "idle_timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(60) + IN_FLIGHT_GRACE);
    });
}

/// The preface and an empty SETTINGS frame.
fn h2_handshake() -> Vec<u8> {
    let mut bytes = H2_PREFACE.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    bytes
}

#[test]
fn an_http2_connection_past_its_handshake_gets_no_header_deadline() {
    run(async {
        let state = ConnState::new();
        state.on_read(&h2_handshake());
        assert_eq!(cut(&state).await, ("idle_timeout", 60));
    });
}

#[test]
fn an_http2_preface_sent_byte_by_byte_is_cut_at_the_header_timeout() {
    run(async {
        let state = std::rc::Rc::new(ConnState::new());
        let trickle = {
            let state = state.clone();
            async move {
                for byte in h2_handshake() {
                    state.on_read(&[byte]);
                    tokio::time::sleep(Duration::from_secs(4)).await;
                }
                std::future::pending::<()>().await;
            }
        };
        let reason = tokio::select! {
            reason = cut(&state) => reason,
            () = trickle => unreachable!(),
        };
        assert_eq!(reason, ("header_timeout", 10));
    });
}

#[test]
fn a_settings_frame_still_arriving_keeps_the_header_deadline() {
    run(async {
        let state = ConnState::new();
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]);
        state.on_read(&bytes);
        assert_eq!(cut(&state).await, ("header_timeout", 10));
    });
}

#[test]
fn an_http1_response_progresses_with_every_write() {
    run(async {
        let state = std::rc::Rc::new(ConnState::new());
        state.on_read(b"GET / HTTP/1.1\r\n\r\n");
        state.request_started();
        let _sending = state.send_started();
        let slow_reader = {
            let state = state.clone();
            async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    state.on_write();
                }
            }
        };
        tokio::select! {
            reason = cut(&state) => panic!("cut: {reason:?}"),
            () = slow_reader => {}
        }
    });
}

#[test]
fn a_response_without_progress_is_cut_at_the_send_timeout_despite_other_traffic() {
    run(async {
        let state = std::rc::Rc::new(ConnState::new());
        state.on_read(&h2_handshake());
        state.request_started();
        let stuck = state.send_started();
        let flowing = state.send_started();
        let pings = {
            let state = state.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    state.on_read(&[0; 17]); // a PING frame
                    state.send_progress(flowing);
                }
            }
        };
        let reason = tokio::select! {
            reason = cut(&state) => reason,
            () = pings => unreachable!(),
        };
        assert_eq!(reason, ("send_timeout", 30));
        state.send_ended(stuck);
    });
}
