//! Helpers for tests and benches (feature `test-support`): owned copies of what a reader
//! delivers, where a transport would frame it into its buffer instead.

use std::time::Duration;

use bytes::Bytes;
use quartet_protocol::Error;

use crate::frame::{EncodedFrame, Sink};
use crate::reader::Reader;

/// One event or gap, as an owned copy.
#[derive(Clone, Debug)]
pub struct Owned {
    /// The complete JSON object (`{"type":"event",...}` or `{"type":"gap",...}`).
    pub json: Bytes,
    /// The cursor after it (also inside `json`).
    pub cursor: String,
}

/// Collects owned copies.
impl Sink for Vec<Owned> {
    fn push(&mut self, frame: EncodedFrame<'_>) {
        let mut json = Vec::with_capacity(frame.json_len());
        frame.write_json(&mut json);
        self.push(Owned { json: Bytes::from(json), cursor: frame.cursor.to_owned() });
    }
}

/// What [`Reader::read_into`] hands over now.
pub async fn read_now(reader: &mut Reader) -> Result<Vec<Owned>, Error> {
    let mut out = Vec::new();
    reader.read_into(&mut out).await?;
    Ok(out)
}

/// What [`Reader::next_into`] hands over within `max_wait` (empty if nothing came).
pub async fn wait(reader: &mut Reader, max_wait: Duration) -> Result<Vec<Owned>, Error> {
    let mut out = Vec::new();
    match tokio::time::timeout(max_wait, reader.next_into(&mut out)).await {
        Ok(pushed) => pushed.map(|_| out),
        Err(_) => Ok(out),
    }
}
