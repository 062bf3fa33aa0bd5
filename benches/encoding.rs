//! Encoding one ~100-byte chat event: once into the shared entry (`Entry::new`, done once per
//! event whatever the room size), then per reader for each wire format: the reader's own frame
//! (cursor appended), and the batch as a poll body, an SSE chunk, and a WebSocket text message.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use quartet_core::command::Scope;
use quartet_core::entry::{Draft, Entry};
use quartet_core::ids::{ClientId, EventName, LogId, RoomName, Seq, UserName};
use quartet_core::{Batch, Delivery};
use quartet_server::transport::{encode_poll_body, sse, ws};
use serde_json::value::RawValue;

const CURSOR: &str = "MTIzNDU2Nzg5YWJjZGVmfGxvYmJ5OjQzfEBhbGljZToy";

fn draft() -> Draft {
    let data = RawValue::from_string(format!(r#"{{"text":"{}"}}"#, "x".repeat(88))).unwrap();
    Draft::now(
        LogId::Room(RoomName::parse("lobby").unwrap()),
        EventName::parse("chat").unwrap(),
        UserName::parse("alice").unwrap(),
        ClientId::random(),
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
    group.bench_function("frame_per_reader", |b| b.iter(|| entry.frame(CURSOR)));
    let frame: Bytes = entry.frame(CURSOR);
    let batch = Batch {
        deliveries: vec![Delivery { frame: frame.clone(), cursor: CURSOR.into() }],
        cursor: CURSOR.into(),
    };
    group.bench_function("poll_body", |b| b.iter(|| encode_poll_body(&batch)));
    group.bench_function("sse_chunk", |b| b.iter(|| sse::encode(&batch)));
    group.bench_function("ws_text_message", |b| b.iter(|| ws::text_frame(frame.clone())));
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
