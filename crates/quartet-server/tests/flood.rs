//! A client that floods: past its burst, every command is answered `rate_limited` with the
//! wait before the next one goes through; none is dropped without a reply, and every command
//! acked is delivered exactly once. On all four transports.

mod common;

use std::time::Duration;

use common::{chat, collect, connect, is_chat, join, start, text};
use quartet_client::{ErrorCode, Reply, Scope, TransportKind};
use quartet_core::Config;

/// Commands sent as fast as they are answered: twice the burst.
const SENT: usize = 80;

#[tokio::test]
async fn a_flood_is_refused_with_a_retry_hint_and_nothing_acked_is_lost() {
    let server = start(Config { command_rate: 20.0, command_burst: 40.0, ..Config::default() }).await;
    for kind in TransportKind::ALL {
        let room = format!("flood-{kind}");
        let mut flooder = connect(&server, &format!("flooder-{kind}"), kind).await;
        let mut reader = connect(&server, &format!("reader-{kind}"), TransportKind::Ws).await;
        join(&mut reader, &room).await;
        join(&mut flooder, &room).await;
        let (mut acked, mut hints) = (Vec::new(), Vec::new());
        for i in 0..SENT {
            match flooder.command(chat(&room, &i.to_string(), Scope::Others)).await.unwrap() {
                Reply::Ack { .. } => acked.push(i.to_string()),
                Reply::Error { code: ErrorCode::RateLimited, retry_after_ms, .. } => {
                    hints.push(retry_after_ms.unwrap_or_else(|| panic!("{kind}: no retry hint")));
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert_eq!(acked.len() + hints.len(), SENT, "{kind}: a command went unanswered");
        assert!(!hints.is_empty(), "{kind}: a flood of {SENT} commands was never limited");
        assert!(
            hints.iter().all(|ms| (1..=50).contains(ms)),
            "{kind}: hints {hints:?} (one command every 50 ms)"
        );
        // After the wait the server names, a command goes through again. (The wait to use is
        // the one of the latest refusal: the flood's last command may have been let through,
        // taking the token an earlier hint announced.)
        let mut after = flooder.command(chat(&room, "after", Scope::Others)).await.unwrap();
        if let Reply::Error { code: ErrorCode::RateLimited, retry_after_ms: Some(wait), .. } = after {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            after = flooder.command(chat(&room, "after", Scope::Others)).await.unwrap();
        }
        assert!(matches!(after, Reply::Ack { .. }), "{kind}: after the wait: {after:?}");
        acked.push("after".into());
        let delivered: Vec<String> = collect(&mut reader, acked.len(), is_chat)
            .await
            .iter()
            .filter_map(|f| f.as_event())
            .map(|e| text(e).to_owned())
            .collect();
        assert_eq!(delivered, acked, "{kind}: every acked publish, once, in order");
    }
}
