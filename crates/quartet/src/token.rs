//! `quartet token`: mints a token for a server started with `--auth-secret` (for the demo, the
//! docs and tests; a real service mints them where its users log in, with the same secret).

use std::time::Duration;

use quartet_server::auth::{Auth, Claims, now};

/// Prints a signed token (HS256) naming a user and what it may do.
#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    /// The server's secret (as given to `quartet serve --auth-secret`).
    #[arg(long, env = "QUARTET_AUTH_SECRET", hide_env_values = true)]
    secret: String,
    /// The user name the token is for.
    #[arg(long)]
    sub: String,
    /// `viewer` (reads only), `member` (the default), `host` or `moderator` (may moderate).
    #[arg(long)]
    role: Option<String>,
    /// Rooms the user may join: names or `prefix*` patterns, comma-separated; default every room.
    #[arg(long, value_delimiter = ',')]
    rooms: Option<Vec<String>>,
    /// How long the token is valid: `30d`, `12h`, `90m`, `45s`.
    #[arg(long, default_value = "1h", value_parser = crate::serve::parse_duration)]
    ttl: Duration,
    /// Also print a link opening the web demo of the server at this address with the token.
    #[arg(long, value_name = "SERVER_URL")]
    demo_link: Option<String>,
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let auth = Auth::new(&args.secret).map_err(|e| anyhow::anyhow!("--secret: {e}"))?;
    let claims = Claims {
        sub: args.sub,
        exp: now().saturating_add(args.ttl.as_secs()),
        nbf: None,
        role: args.role,
        rooms: args.rooms,
    };
    let token = auth.mint(&claims);
    // Checked as the server will check it: a bad name, role or pattern fails here, not later.
    auth.verify(&token, now()).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{token}");
    if let Some(server) = args.demo_link {
        println!("{}/?token={token}", server.trim_end_matches('/'));
    }
    Ok(())
}
