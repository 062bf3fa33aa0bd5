//! The `quartet` command: `serve` (the default), `chat` and `bench`. See `quartet --help`.

mod chat;
mod serve;

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
    /// Compare the four transports side by side (not built yet).
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// A short run (under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// Comma-separated transports to measure.
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// Where to write the report.
    #[arg(long)]
    out: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        None => runtime.block_on(serve::run(cli.serve)),
        Some(Command::Serve(args)) => runtime.block_on(serve::run(args)),
        Some(Command::Chat(args)) => runtime.block_on(chat::run(args)),
        Some(Command::Bench(_)) => {
            eprintln!(
                "quartet bench is not built yet: the side-by-side comparison of the four transports is planned work."
            );
            std::process::exit(2);
        }
    }
}
