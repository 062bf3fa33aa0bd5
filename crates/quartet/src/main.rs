//! The `quartet` command: `serve` (the default), `chat`, `bench`, `soak` and `token`. See `quartet --help`.

mod bench;
mod chat;
mod serve;
mod soak;
mod token;

use clap::{Parser, Subcommand};

/// One IM core over short polling, long polling, Server-Sent Events and WebSocket.
#[derive(Parser)]
#[command(name = "quartet", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve` is the default subcommand: its flags work without naming it.
    #[command(flatten)]
    serve: serve::ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(serve::ServeArgs),
    /// A terminal chat over any of the four transports.
    Chat(chat::ChatArgs),
    /// Compare the four transports side by side: latency, load, bytes, memory.
    Bench(bench::BenchArgs),
    /// Mint a token for a server started with --auth-secret.
    Token(token::TokenArgs),
    /// Many clients over the four transports for a long time: does memory, descriptors and
    /// latency level off?
    Soak(soak::SoakArgs),
}

/// File descriptors the bench asks for (when allowed to): a 10 000-subscriber run holds 10 000
/// sockets on each side, plus pooled connections winding down from the previous run.
const BENCH_NOFILE: u64 = 65_536;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of sockets (a big room, a bench) need more than the common soft limit of 1024
    // descriptors; take what the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if let Some(Command::Bench(_) | Command::Soak(_)) = &cli.command {
        // The bench holds tens of thousands of sockets across its runs (and its servers inherit
        // the limit); as root it may raise the hard limit too.
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, BENCH_NOFILE, BENCH_NOFILE);
    }
    match cli.command {
        Some(Command::Bench(args)) => return bench::run(args), // its own runtime, pinned
        Some(Command::Token(args)) => return token::run(args),
        Some(Command::Soak(args)) => return soak::run(args), // its own runtime, pinned
        _ => {}
    }
    match cli.command {
        None => cli.serve.runtime()?.block_on(serve::run(cli.serve)),
        Some(Command::Serve(args)) => args.runtime()?.block_on(serve::run(args)),
        Some(Command::Chat(args)) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(chat::run(args))
        }
        Some(Command::Bench(_) | Command::Token(_) | Command::Soak(_)) => unreachable!("handled above"),
    }
}
