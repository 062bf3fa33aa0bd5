//! Encoding one ~100-byte chat event: once into the shared entry (`Entry::new`, done once per
//! event whatever the room size), then per reader for each wire format, as the transports do
//! it: the reader hands the shared JSON and its own cursor to the transport's sink, which frames
//! it into its write buffer (a poll body, an SSE chunk, a WebSocket text frame, a Socket.IO
//! event in a WebSocket frame). For contrast, `owned_frame_per_reader` is what a sink saves: a
//! fresh buffer per reader per event; `socketio_form_once_per_event` is the Socket.IO encoding
//! the entry caches on its first Socket.IO reader.

use criterion::{Criterion, criterion_group, criterion_main};
use quartet_core::entry::{Draft, Entry};
use quartet_core::{EncodedFrame, Sink, Source};
use quartet_protocol::{ClientId, EventName, LogId, RoomName, Scope, Seq, UserName};
use quartet_server::transport::{PollBody, socketio, sse, ws};
use serde_json::value::RawValue;

const CURSOR: &str = "MTIzNDU2Nzg5YWJjZGVmfGxvYmJ5OjQzfEBhbGljZToy";

fn draft() -> Draft {
    let data = RawValue::from_string(format!(r#"{{"text":"{}"}}"#, "x".repeat(88))).unwrap();
    Draft::now(
        LogId::Room(RoomName::parse("lobby").unwrap()),
        EventName::parse("chat").unwrap(),
        UserName::parse("alice").unwrap(),
        ClientId::from_random([7; 16]),
        Scope::Room,
        data,
    )
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoding");
    group.bench_function("entry_once_per_event", |b| {
        b.iter_batched(draft, |d| Entry::new(Seq(43), d), criterion::BatchSize::SmallInput)
    });
    let entry = Entry::new(Seq(43), draft());
    group.bench_function("owned_frame_per_reader", |b| b.iter(|| entry.frame(CURSOR)));
    let frame = EncodedFrame { head: entry.json_head(), cursor: CURSOR, source: Source::Event(&entry) };
    group.bench_function("poll_body", |b| {
        b.iter(|| {
            let mut body = PollBody::default();
            body.push(frame);
            body.finish(CURSOR)
        })
    });
    let mut chunk = sse::SseOut::default();
    group.bench_function("sse_block", |b| {
        b.iter(|| {
            chunk.push(frame);
            chunk.take()
        })
    });
    let mut out = ws::WsOut::default();
    group.bench_function("ws_text_frame", |b| {
        b.iter(|| {
            out.push(frame);
            let len = out.bytes().len();
            out.clear();
            len
        })
    });
    group.bench_function("socketio_form_once_per_event", |b| b.iter(|| socketio::encode_event(&entry)));
    let mut out = socketio::Outgoing::websocket();
    group.bench_function("socketio_ws_frame", |b| {
        b.iter(|| {
            out.push(frame);
            let len = out.bytes().len();
            out.clear();
            len
        })
    });
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
