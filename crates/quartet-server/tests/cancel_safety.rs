//! `Client::receive` is safe to cancel on every transport: a receive future dropped at any of
//! its await points (as `quartet chat` does in a `select!`) loses nothing and repeats nothing.
//!
//! Each event is published while the subscriber receives through attempts that poll `receive`
//! at most 1, 2, 3, ... times before dropping it, so successive attempts are cut at successive
//! await points: before a request, while it is in flight, after the answer arrived, while a
//! stream waits for its next chunk.

mod common;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use common::*;
use quartet_client::{Frame, Scope, TransportKind};

/// Events published, one at a time, each received through cut attempts.
const EVENTS: usize = 15;

/// Polls `future` until it completes or has been pending `budget` times, then drops it.
async fn poll_at_most<F: Future>(future: F, budget: usize) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut pending = 0;
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => {
            pending += 1;
            if pending >= budget { Poll::Ready(None) } else { Poll::Pending }
        }
    })
    .await
}

async fn receive_survives_cancellation(kind: TransportKind) {
    let server = start_default().await;
    let mut publisher = connect(&server, "publisher", TransportKind::ShortPoll).await;
    let mut bob = connect(&server, "bob", kind).await;
    join(&mut publisher, "r").await;
    join(&mut bob, "r").await;
    let mut texts = Vec::new();
    let mut cut = 0;
    for i in 0..EVENTS {
        let text = format!("m{i}");
        let publish = say(&mut publisher, "r", &text, Scope::Room);
        let receive = async {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            let mut budget = 1;
            while !texts.contains(&text) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{kind}: {text} never arrived after {cut} cut receives; got {texts:?}"
                );
                match poll_at_most(bob.receive(), budget).await {
                    Some(frames) => {
                        let frames = frames.unwrap_or_else(|e| panic!("{kind}: {e}"));
                        texts.extend(frames.iter().filter(|f| is_chat(f)).map(text_of));
                    }
                    None => cut += 1,
                }
                budget += 1;
            }
        };
        tokio::join!(publish, receive);
    }
    let expected: Vec<String> = (0..EVENTS).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "{kind}: every event once, in order");
    assert!(cut >= EVENTS / 2, "{kind}: only {cut} receives were cut: the test did not test");
}

fn text_of(frame: &Frame) -> String {
    text(frame.as_event().unwrap()).to_owned()
}

macro_rules! per_transport {
    ($($module:ident => $kind:expr),*) => {$(
        mod $module {
            use super::*;
            #[tokio::test]
            async fn receive_survives_cancellation() {
                super::receive_survives_cancellation($kind).await;
            }
        }
    )*};
}

per_transport!(
    short_poll => TransportKind::ShortPoll,
    long_poll => TransportKind::LongPoll,
    sse => TransportKind::Sse,
    ws => TransportKind::Ws
);
