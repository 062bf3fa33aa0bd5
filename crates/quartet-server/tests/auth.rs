//! A server started with `--auth-secret`: who may register, as whom, and what each role may do
//! in which rooms, over all four transports (and, with a Redis, on a three-node cluster, where
//! a client's rights must follow it to every node).

mod common;

use common::{PATIENCE, ServeOptions, Server, chat, collect, is_chat, options, start_with, text};
use quartet_client::{Client, ErrorCode, Reply, Scope, TransportKind};
use quartet_core::Config;
use quartet_server::auth::{Auth, Claims, now};
use serde_json::{Value, json};

const SECRET: &str = "the-secret-of-the-auth-suite-32-bytes-at-least";

fn auth() -> Auth {
    Auth::new(SECRET).unwrap()
}

fn token(sub: &str, role: Option<&str>, rooms: Option<&[&str]>) -> String {
    auth().mint(&Claims {
        sub: sub.into(),
        exp: now() + 3600,
        nbf: None,
        role: role.map(str::to_owned),
        rooms: rooms.map(|rooms| rooms.iter().map(|r| (*r).to_owned()).collect()),
    })
}

async fn server() -> Server {
    start_with(Config::default(), ServeOptions { auth: Some(auth()), ..ServeOptions::default() }).await
}

/// `POST /v1/clients` with `authorization` (a whole header value) and `body`: status, JSON.
async fn register(server: &Server, authorization: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = server.http.post(format!("{}/v1/clients", server.url)).json(&body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn connect(server: &Server, token: &str, kind: TransportKind) -> Client {
    Client::connect_with_token(server.http.clone(), &server.url, token, kind, options()).await.unwrap()
}

fn refused(reply: &Reply) -> ErrorCode {
    match reply {
        Reply::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn registering_needs_a_good_token_and_takes_its_name() {
    let server = server().await;
    let good = token("alice", None, None);
    let expired =
        auth().mint(&Claims { sub: "alice".into(), exp: now() - 3600, nbf: None, role: None, rooms: None });
    let forged = Auth::new("not-the-servers-secret-but-32-bytes-long").unwrap().mint(&Claims {
        sub: "alice".into(),
        exp: now() + 3600,
        nbf: None,
        role: Some("host".into()),
        rooms: None,
    });
    let cases: [(&str, Option<String>, Value, u16, &str); 6] = [
        ("no token", None, json!({ "name": "alice" }), 401, "unauthorized"),
        ("not bearer", Some(format!("Basic {good}")), json!({}), 401, "unauthorized"),
        ("garbage", Some("Bearer not.a.token".into()), json!({}), 401, "unauthorized"),
        ("bad signature", Some(format!("Bearer {forged}")), json!({}), 401, "unauthorized"),
        ("expired", Some(format!("Bearer {expired}")), json!({}), 401, "token_expired"),
        ("another name", Some(format!("Bearer {good}")), json!({ "name": "mallory" }), 403, "forbidden"),
    ];
    for (case, authorization, body, status, code) in cases {
        let (got, reply) = register(&server, authorization.as_deref(), body).await;
        assert_eq!((got, reply["code"].as_str()), (status, Some(code)), "{case}: {reply}");
        assert_eq!(reply["type"], "error", "{case}");
    }
    for body in [json!({}), json!({ "name": "alice" })] {
        let (status, reply) = register(&server, Some(&format!("Bearer {good}")), body).await;
        assert_eq!((status, reply["name"].as_str()), (201, Some("alice")), "{reply}");
        // The client id is the session's secret: 128 random bits at least.
        assert!(reply["client"].as_str().unwrap().len() >= 22, "{reply}");
    }
    let health: Value =
        server.http.get(format!("{}/healthz", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["auth"], "token");
}

#[tokio::test]
async fn an_open_server_says_so() {
    let server = start_with(Config::default(), ServeOptions::default()).await;
    let health: Value =
        server.http.get(format!("{}/healthz", server.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["auth"], "open");
}

/// On each transport: a viewer limited to `live-*` joins and reads there, is refused elsewhere
/// and may not publish nor send direct messages; a member's publish reaches it.
async fn roles_and_rooms_hold(server: &Server) {
    for kind in TransportKind::ALL {
        let room = format!("live-{kind}");
        let mut viewer = connect(server, &token("vic", Some("viewer"), Some(&["live-*"])), kind).await;
        let mut member = connect(server, &token("mia", None, None), kind).await;
        assert!(
            matches!(
                viewer.command(quartet_client::Command::join(&room).unwrap()).await.unwrap(),
                Reply::Joined { .. }
            ),
            "{kind}"
        );
        let elsewhere = viewer.command(quartet_client::Command::join("backstage").unwrap()).await.unwrap();
        assert_eq!(refused(&elsewhere), ErrorCode::Forbidden, "{kind}: a room the token does not allow");
        let publish = viewer.command(chat(&room, "from a viewer", Scope::Room)).await.unwrap();
        assert_eq!(refused(&publish), ErrorCode::Forbidden, "{kind}: a viewer publishing");
        let direct = viewer
            .command(quartet_client::Command::direct("mia", "dm", &json!({ "text": "hi" })).unwrap())
            .await
            .unwrap();
        assert_eq!(refused(&direct), ErrorCode::Forbidden, "{kind}: a viewer's direct message");
        assert!(matches!(
            member.command(quartet_client::Command::join(&room).unwrap()).await.unwrap(),
            Reply::Joined { .. }
        ));
        assert!(
            matches!(
                member.command(chat(&room, "for everyone", Scope::Room)).await.unwrap(),
                Reply::Ack { .. }
            ),
            "{kind}"
        );
        let seen =
            tokio::time::timeout(PATIENCE, collect(&mut viewer, 1, is_chat)).await.expect("the viewer reads");
        let texts: Vec<&str> = seen.iter().filter_map(|f| f.as_event()).map(text).collect();
        assert_eq!(texts, ["for everyone"], "{kind}");
    }
}

#[tokio::test]
async fn roles_and_rooms_hold_on_every_transport() {
    roles_and_rooms_hold(&server().await).await;
}

#[tokio::test]
async fn roles_and_rooms_hold_on_every_node_of_a_cluster() {
    common::on_a_cluster(async { roles_and_rooms_hold(&server().await).await }).await;
}

#[tokio::test]
async fn a_cursor_cannot_take_a_client_into_a_room_its_token_does_not_allow() {
    let server = server().await;
    let mut member = connect(&server, &token("mia", None, None), TransportKind::LongPoll).await;
    member.command(quartet_client::Command::join("backstage").unwrap()).await.unwrap();
    // Its own presence `join`: after it, the cursor names the room.
    tokio::time::timeout(PATIENCE, collect(&mut member, 1, |_| true)).await.unwrap();
    let cursor = member.cursor().to_owned();
    assert!(
        quartet_protocol::Cursor::decode(&cursor)
            .unwrap()
            .positions
            .keys()
            .any(|log| log.to_string() == "backstage")
    );
    let viewer = token("vic", Some("viewer"), Some(&["live-*"]));
    let clients = || async {
        let metrics =
            server.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        let line = metrics.lines().find(|l| l.starts_with("quartet_clients ")).unwrap().to_owned();
        line["quartet_clients ".len()..].parse::<u64>().unwrap()
    };
    let before = clients().await;
    let (status, reply) =
        register(&server, Some(&format!("Bearer {viewer}")), json!({ "cursor": cursor })).await;
    assert_eq!((status, reply["code"].as_str()), (403, Some("forbidden")), "{reply}");
    assert_eq!(clients().await, before, "a refused registration left a client behind");
}

/// Runs the command `make` builds until it is refused with `code`: at once on one node; on a
/// cluster within [`PATIENCE`], since another node hears of a moderation a moment after the
/// moderator's ack.
async fn refused_with(
    client: &mut Client,
    make: impl Fn() -> quartet_client::Command,
    code: ErrorCode,
    cluster: bool,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match client.command(make()).await.unwrap() {
            Reply::Error { code: got, .. } if got == code => return,
            _ if cluster && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => panic!("{}: {:?} got {other:?}, not {code:?}", client.kind(), make()),
        }
    }
}

/// On each transport: only a host or moderator of the room moderates; a muted user's publishes
/// are refused `forbidden` until unmuted; a kicked user's client is told through its own stream
/// and may not rejoin.
async fn moderation_holds(server: &Server, cluster: bool) {
    use quartet_client::Command;
    for kind in TransportKind::ALL {
        let room = format!("live-{kind}");
        let mut host =
            connect(server, &token("hana", Some("host"), Some(&["live-*"])), TransportKind::Ws).await;
        let mut member = connect(server, &token("max", None, None), kind).await;
        let mut bob = connect(server, &token("bob", None, None), kind).await;
        for client in [&mut host, &mut member, &mut bob] {
            assert!(matches!(
                client.command(Command::join(&room).unwrap()).await.unwrap(),
                Reply::Joined { .. }
            ));
        }
        // Nobody else moderates: not a member, not a host outside its token's rooms.
        let by_member = member.command(Command::mute(&room, "bob", 60).unwrap()).await.unwrap();
        assert_eq!(refused(&by_member), ErrorCode::Forbidden, "{kind}: a member muting");
        let elsewhere = host.command(Command::kick("backstage", "bob", 60).unwrap()).await.unwrap();
        assert_eq!(refused(&elsewhere), ErrorCode::Forbidden, "{kind}: a host outside its rooms");

        // Muted: refused, with the time left; unmuted: published.
        let ack = host.command(Command::mute(&room, "bob", 60).unwrap()).await.unwrap();
        assert!(matches!(ack, Reply::Ack { .. }), "{kind}: {ack:?}");
        refused_with(&mut bob, || chat(&room, "muted?", Scope::Room), ErrorCode::Forbidden, cluster).await;
        host.command(Command::unmute(&room, "bob").unwrap()).await.unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match bob.command(chat(&room, "unmuted", Scope::Room)).await.unwrap() {
                Reply::Ack { .. } => break,
                other => assert!(cluster && tokio::time::Instant::now() < deadline, "{kind}: {other:?}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // Kicked: bob's own stream tells him, the room is closed to him.
        let ack = host.command(Command::kick(&room, "bob", 60).unwrap()).await.unwrap();
        assert!(matches!(ack, Reply::Ack { .. }), "{kind}: {ack:?}");
        let told = tokio::time::timeout(
            PATIENCE,
            collect(&mut bob, 1, |f| {
                f.as_event().is_some_and(|e| {
                    e.event == "moderation" && e.room == "@bob" && e.data["action"] == "kick"
                })
            }),
        )
        .await
        .expect("the kicked client is told");
        assert_eq!(told[0].as_event().unwrap().data["room"], room.as_str(), "{kind}");
        refused_with(&mut bob, || chat(&room, "still in?", Scope::Room), ErrorCode::NotJoined, cluster).await;
        let rejoin = bob.command(Command::join(&room).unwrap()).await.unwrap();
        assert_eq!(refused(&rejoin), ErrorCode::Forbidden, "{kind}: rejoining after a kick");
        // The member saw bob leave, kicked.
        let left = tokio::time::timeout(
            PATIENCE,
            collect(&mut member, 1, |f| {
                f.as_event().is_some_and(|e| e.event == "presence" && e.data["reason"] == "kicked")
            }),
        )
        .await
        .expect("the room hears of the kick");
        assert_eq!(left[0].as_event().unwrap().from, "bob", "{kind}");
    }
}

#[tokio::test]
async fn moderation_holds_on_every_transport() {
    moderation_holds(&server().await, false).await;
}

#[tokio::test]
async fn moderation_holds_on_every_node_of_a_cluster() {
    common::on_a_cluster(async { moderation_holds(&server().await, true).await }).await;
}
