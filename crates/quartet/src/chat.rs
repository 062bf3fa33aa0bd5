//! `quartet chat`: a terminal chat over any transport, built on `quartet-client`.
//!
//! Lines you type are published to the room; lines starting with `/` are commands (`/help`).
//! Incoming events print as they arrive, each with its room and seq, so the ordering is visible.

use std::time::Duration;

use anyhow::Context;
use quartet_client::{
    Client, ClientError, Command, ErrorCode, Event, Frame, Options, Reply, Scope, TransportKind,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Flags of `quartet chat`.
#[derive(clap::Args, Debug)]
pub(crate) struct ChatArgs {
    /// short-poll, long-poll, sse or ws.
    #[arg(long)]
    transport: TransportKind,
    /// Room to join.
    #[arg(long)]
    room: String,
    /// Your name.
    #[arg(long)]
    name: String,
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Short poll interval in ms.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

const HELP: &str = "\
  text              say it to the room
  /others TEXT      say it to everyone but you      /self TEXT   only to you
  /dm USER TEXT     direct message                  /gift KIND   send a gift (rose, star, rocket)
  /join ROOM        join (and talk in) another room /leave ROOM  leave a room
  /switch T         continue on transport T (short-poll, long-poll, sse, ws)
  /quit             leave everything and exit";

pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let options = Options { poll_interval: Duration::from_millis(args.poll_ms), ..Options::default() };
    let mut client = Client::connect_with(&args.url, &args.name, args.transport, options)
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let mut room = args.room.clone();
    let reply = client.command(Command::join(&room)?).await?;
    show_reply(&reply);
    println!("-- {} in {room} over {} (/help for commands)", args.name, client.kind());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut counter = 0u64;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                counter += 1;
                match parse_line(&line, &room, &format!("{}-{counter}", args.name)) {
                    Input::Nothing => {}
                    Input::Help => println!("{HELP}"),
                    Input::Quit => break,
                    Input::Switch(kind) => match client.switch(kind).await {
                        Ok(()) => println!("-- now on {kind}, resumed from the cursor"),
                        Err(e) => println!("!! cannot switch: {e}"),
                    },
                    Input::Command(command) => {
                        if let Command::Join { room: joined, .. } = &command {
                            room = joined.to_string();
                        }
                        match client.command(command).await {
                            Ok(reply) => show_reply(&reply),
                            Err(e) => println!("!! {e}"),
                        }
                    }
                }
            }
            frames = client.receive() => match frames {
                Ok(frames) => frames.iter().for_each(show_frame),
                // Said, and gone past: the next receive reads on after it.
                Err(skipped @ ClientError::Unreadable { .. }) => println!("!! {skipped}"),
                Err(ClientError::Server { code: ErrorCode::UnknownClient, .. }) => {
                    // The server forgot this client (it expired, or a memory store restarted):
                    // carry on as a new client from the cursor, missing nothing.
                    println!("~~ the server forgot this client; registering again from the cursor…");
                    if let Err(e) = client.register_again().await {
                        println!("!! cannot register again: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Err(ClientError::Server { code, message, .. }) => {
                    println!("!! server: {code}: {message}");
                    break;
                }
                Err(e) => {
                    println!("~~ connection lost ({e}); reconnecting from the cursor…");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let kind = client.kind();
                    if let Err(e) = client.switch(kind).await {
                        println!("!! reconnect failed: {e}");
                    }
                }
            }
        }
    }
    let _ = client.close().await;
    println!("-- bye");
    Ok(())
}

enum Input {
    Nothing,
    Help,
    Quit,
    Switch(TransportKind),
    Command(Command),
}

fn parse_line(line: &str, room: &str, id: &str) -> Input {
    let line = line.trim();
    if line.is_empty() {
        return Input::Nothing;
    }
    // A name the protocol refuses is said at once (see `checked`), before anything is sent.
    let publish = |to: Scope, text: &str| {
        Command::publish(room, "chat", &json!({ "text": text })).map(|c| c.to(to).id(id))
    };
    let Some(rest) = line.strip_prefix('/') else {
        return checked(publish(Scope::Room, line));
    };
    let (verb, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    match verb {
        "help" => Input::Help,
        "quit" | "exit" => Input::Quit,
        "others" => checked(publish(Scope::Others, arg)),
        "self" => checked(publish(Scope::SelfOnly, arg)),
        "gift" => {
            let kind = if arg.is_empty() { "rose" } else { arg };
            checked(Command::publish(room, "gift", &json!({ "kind": kind })).map(|c| c.id(id)))
        }
        "dm" => {
            let (user, text) = arg.split_once(' ').unwrap_or((arg, ""));
            checked(Command::direct(user, "chat", &json!({ "text": text })).map(|c| c.id(id)))
        }
        "join" => checked(Command::join(arg)),
        "leave" => checked(Command::leave(arg)),
        "switch" => match arg.parse() {
            Ok(kind) => Input::Switch(kind),
            Err(e) => {
                println!("!! {e}");
                Input::Nothing
            }
        },
        _ => {
            println!("!! unknown command /{verb}; /help lists them");
            Input::Nothing
        }
    }
}

/// A command, or the reason it cannot be built (said to the user; nothing is sent).
fn checked(built: Result<Command, quartet_protocol::Error>) -> Input {
    match built {
        Ok(command) => Input::Command(command),
        Err(e) => {
            println!("!! {e}");
            Input::Nothing
        }
    }
}

fn show_reply(reply: &Reply) {
    match reply {
        Reply::Joined { room, online, .. } => println!("-- joined {room} ({online} online)"),
        Reply::Left { room } => println!("-- left {room}"),
        Reply::Error { code, message, .. } => println!("!! {code}: {message}"),
        Reply::Ack { .. } | Reply::Pong => {} // the event itself will show
    }
}

fn show_frame(frame: &Frame) {
    match frame {
        Frame::Gap(gap) => println!("~~ gap in {}: missed events ({})", gap.room, gap.reason.as_str()),
        Frame::Event(event) => println!("{}", render(event)),
    }
}

fn render(e: &Event) -> String {
    let text = |v: &Value| v.get("text").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_owned);
    match e.event.as_str() {
        "presence" if e.data["action"] == "count" => {
            format!("[{} #{}] * {} online", e.room, e.seq, e.data["online"])
        }
        "presence" => {
            let action = if e.data["action"] == "join" { "joined" } else { "left" };
            format!("[{} #{}] * {} {action} ({} online)", e.room, e.seq, e.from, e.data["online"])
        }
        "gift" => format!(
            "[{} #{}] * {} sent a {}",
            e.room,
            e.seq,
            e.from,
            e.data["kind"].as_str().unwrap_or("gift")
        ),
        _ => format!("[{} #{}] {}: {}", e.room, e.seq, e.from, text(&e.data)),
    }
}
