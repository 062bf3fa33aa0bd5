//! The `quartet` binary as the tests start it: one way to start it, wait for its banner, and
//! kill it.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_quartet");

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every Markdown file under `dir`, at any depth, sorted.
pub fn markdown_under(dir: &Path) -> Vec<PathBuf> {
    let mut pages = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// A `quartet` process this test started (SIGKILL when dropped), or only the address of one.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Server {
    /// Starts the binary in `dir` with `args` (the address comes from `QUARTET_ADDR`, so the
    /// command line holds only what the test is about) and waits for its whole banner, which it
    /// returns too.
    pub fn start_in(dir: &Path, args: &[&str]) -> (Server, Vec<String>) {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("QUARTET_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the quartet binary runs");
        let mut banner = Vec::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        while url.is_none() || !banner.last().is_some_and(|l: &String| l.starts_with("web demo")) {
            let line = lines.next().expect("the server prints its banner").unwrap();
            if let Some(at) = line.strip_prefix("quartet listening on ") {
                url = Some(at.to_owned());
            }
            banner.push(line);
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url: String = url.unwrap();
        let address = url.trim_start_matches("http://").to_owned();
        (Server { child: Some(child), url, address }, banner)
    }

    /// [`Server::start_in`] the temporary directory, for a server that keeps nothing on disk.
    pub fn start(args: &[&str]) -> Server {
        Server::start_in(&std::env::temp_dir(), args).0
    }

    /// A server this test did not start, at `address` (`127.0.0.1:PORT`).
    pub fn at(address: String) -> Server {
        Server { child: None, url: format!("http://{address}"), address }
    }

    /// The process id of a server this test started.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a server this test started").id()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("a server this test started");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
