//! The web demo (`web-demo/` at the repository root), served at `/`.
//!
//! Release builds embed the files in the binary, so an installed `quartet` serves the demo with
//! no files beside it; debug builds read them from disk, so editing the demo needs no rebuild.
//! The Socket.IO pane's client library comes from npm (see [`Vendor`]).

use std::borrow::Cow;
use std::path::Path;

use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};
use quartet_protocol::{Error, ErrorCode};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../../web-demo/"]
#[exclude = "node_modules/*"]
#[exclude = "tests/*"]
#[exclude = "package*.json"]
struct Assets;

/// The browser build of `socket.io-client`, for the Socket.IO pane, served at `/vendor/`: from
/// `web-demo/node_modules` (`npm ci` in `web-demo/`), embedded in release builds made after it.
/// Without it the pane says how to get it; nothing else needs it.
#[derive(RustEmbed)]
#[folder = "../../web-demo/node_modules/socket.io-client/dist/"]
#[include = "socket.io.esm.min.js"]
#[allow_missing = true]
struct Vendor;

/// The one file served from npm.
const SOCKET_IO_CLIENT: &str = "socket.io.esm.min.js";

/// A file of [`Vendor`]: embedded, else read from the checkout the binary was built in (a build
/// made before `npm ci` finds it there once it is installed, as CI's order has it).
fn vendored(name: &str) -> Option<Cow<'static, [u8]>> {
    if let Some(file) = Vendor::get(name) {
        return Some(file.data);
    }
    if name != SOCKET_IO_CLIENT {
        return None;
    }
    let dist =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web-demo/node_modules/socket.io-client/dist");
    std::fs::read(dist.join(name)).ok().map(Cow::Owned)
}

/// The content type for a file name, by extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Serves a demo file, `index.html` for `/`; anything else is the JSON 404 of the API.
pub(crate) async fn asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let data = match path.strip_prefix("vendor/") {
        Some(name) => vendored(name),
        None => Assets::get(path).map(|file| file.data),
    };
    match data {
        Some(data) => (
            [(header::CONTENT_TYPE, content_type(path)), (header::CACHE_CONTROL, "no-cache")],
            data.into_owned(),
        )
            .into_response(),
        None => ApiError::from(Error::new(ErrorCode::NotFound, "no such route; see docs/protocol.md"))
            .into_response(),
    }
}
