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
    /// Your name (on a server with tokens, the token's user: `--name` may then be left out).
    #[arg(long, required_unless_present = "token", default_value = "")]
    name: String,
    /// A token from `quartet token`, for a server started with `--auth-secret`.
    #[arg(long, env = "QUARTET_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
  /mute USER [S]    host or moderator: USER may not publish here for S seconds (default 600)
  /unmute USER      lift it                         /kick USER [S]  out of the room for S s
  /quit             leave everything and exit";

pub(crate) async fn run(args: ChatArgs) -> anyhow::Result<()> {
    let options = Options { poll_interval: Duration::from_millis(args.poll_ms), ..Options::default() };
    let connected = match &args.token {
        Some(token) => {
            Client::connect_with_token(reqwest::Client::new(), &args.url, token, args.transport, options)
                .await
        }
        None => Client::connect_with(&args.url, &args.name, args.transport, options).await,
    };
    let mut client = connected.with_context(|| format!("cannot register at {}", args.url))?;
    let name = client.registration().name.clone();
    let mut room = args.room.clone();
    let reply = client.command(Command::join(&room)?).await?;
    show_reply(&reply);
    println!("-- {name} in {room} over {} (/help for commands)", client.kind());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut counter = 0u64;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                counter += 1;
                match parse_line(&line, &room, &format!("{name}-{counter}")) {
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
        "mute" | "kick" => {
            let (user, seconds) = arg.split_once(' ').unwrap_or((arg, ""));
            let seconds = match seconds.trim() {
                "" => quartet_protocol::limits::DEFAULT_MUTE_SECONDS,
                given => match given.parse() {
                    Ok(seconds) => seconds,
                    Err(_) => {
                        println!("!! /{verb} USER [SECONDS]: {given:?} is not a number of seconds");
                        return Input::Nothing;
                    }
                },
            };
            let built = if verb == "mute" {
                Command::mute(room, user, seconds)
            } else {
                Command::kick(room, user, seconds)
            };
            checked(built)
        }
        "unmute" => checked(Command::unmute(room, arg)),
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
            let action = match (e.data["action"].as_str(), e.data["reason"].as_str()) {
                (Some("join"), _) => "joined",
                (_, Some("kicked")) => "was kicked",
                _ => "left",
            };
            format!("[{} #{}] * {} {action} ({} online)", e.room, e.seq, e.from, e.data["online"])
        }
        "gift" => format!(
            "[{} #{}] * {} sent a {}",
            e.room,
            e.seq,
            e.from,
            e.data["kind"].as_str().unwrap_or("gift")
        ),
        "moderation" => {
            let d = &e.data;
            let (user, room, seconds) =
                (d["user"].as_str().unwrap_or("?"), d["room"].as_str().unwrap_or("?"), &d["seconds"]);
            match d["action"].as_str() {
                Some("mute") => {
                    format!("[{} #{}] * {} muted {user} in {room} for {seconds} s", e.room, e.seq, e.from)
                }
                Some("kick") => {
                    format!("[{} #{}] * {} kicked {user} from {room} for {seconds} s", e.room, e.seq, e.from)
                }
                _ => format!("[{} #{}] * {} unmuted {user} in {room}", e.room, e.seq, e.from),
            }
        }
        _ => format!("[{} #{}] {}: {}", e.room, e.seq, e.from, text(&e.data)),
    }
}
