//! The watch: `GET /sdk/v1/gameserver/watch` answers NDJSON, one GameServer per line. Lines
//! arrive in chunks of any size, so a line may be split across chunks (even inside a UTF-8
//! character) and a chunk may hold several lines; [`LineBuffer`] puts them back together.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use flotilla_api::GameServer;
use futures::{Stream, StreamExt, stream::BoxStream};

use crate::error::{Error, Result};

/// The caller's GameServer as it changes: the current object first, then every change.
///
/// Each item is a [`GameServer`], or an error: a line that is not a GameServer
/// ([`Error::Decode`]; the stream goes on with the next line), or a broken connection
/// ([`Error::Transport`]; the stream ends after it). The stream ends when the GameServer is
/// deleted. To resume after an error, call [`Sdk::watch`](crate::Sdk::watch) again: the
/// current object comes first, so no state is missed.
pub struct Watch {
    inner: BoxStream<'static, Result<GameServer>>,
}

impl Watch {
    pub(crate) fn new(request: String, response: reqwest::Response) -> Self {
        let state = WatchState {
            request,
            response: Some(response),
            lines: LineBuffer::default(),
        };
        let inner = futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        });
        Watch { inner: inner.boxed() }
    }
}

impl Stream for Watch {
    type Item = Result<GameServer>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

struct WatchState {
    request: String,
    /// `None` once the body has ended or failed.
    response: Option<reqwest::Response>,
    lines: LineBuffer,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<GameServer>> {
        loop {
            if let Some(line) = self.lines.next_line() {
                if let Some(item) = self.parse(&line) {
                    return Some(item);
                }
                continue;
            }
            let response = self.response.as_mut()?;
            match response.chunk().await {
                Ok(Some(chunk)) => self.lines.push(&chunk),
                Ok(None) => {
                    self.response = None;
                    // A last line without its newline is still a line (and if it was cut
                    // short, a decode error says so).
                    let rest = self.lines.finish()?;
                    return self.parse(&rest);
                }
                Err(source) => {
                    self.response = None;
                    self.lines.finish();
                    return Some(Err(Error::Transport {
                        request: self.request.clone(),
                        source,
                    }));
                }
            }
        }
    }

    /// A GameServer from a line; `None` for a blank line.
    fn parse(&self, line: &[u8]) -> Option<Result<GameServer>> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(serde_json::from_slice(line).map_err(|source| Error::Decode {
            request: self.request.clone(),
            source,
        }))
    }
}

/// Splits a byte stream into `\n`-terminated lines. No I/O: fed chunk by chunk.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no newline, so each byte is searched once.
    scanned: usize,
}

impl LineBuffer {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete line, without its `\n` (or `\r\n`).
    pub(crate) fn next_line(&mut self) -> Option<Vec<u8>> {
        let found = self.buffer[self.scanned..].iter().position(|&b| b == b'\n');
        let Some(offset) = found else {
            self.scanned = self.buffer.len();
            return None;
        };
        let end = self.scanned + offset;
        let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
        self.scanned = 0;
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    /// What is left once the stream has ended: a last line without its newline, if any.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        self.scanned = 0;
        let rest = std::mem::take(&mut self.buffer);
        (!rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buffer = LineBuffer::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            buffer.push(chunk);
            while let Some(line) = buffer.next_line() {
                lines.push(line);
            }
        }
        lines.extend(buffer.finish());
        lines
    }

    #[test]
    fn lines_split_anywhere_across_chunks_come_out_whole() {
        let text = "{\"a\":\"é\"}\n{\"b\":2}\r\n{\"c\":3}\n".as_bytes();
        let expected: Vec<Vec<u8>> = vec![
            "{\"a\":\"é\"}".as_bytes().to_vec(),
            b"{\"b\":2}".to_vec(),
            b"{\"c\":3}".to_vec(),
        ];
        // Every split point, including inside the two-byte 'é'.
        for split in 0..=text.len() {
            let (first, second) = text.split_at(split);
            assert_eq!(lines_of(&[first, second]), expected, "split at {split}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(lines_of(&bytes), expected);
    }

    #[test]
    fn several_lines_in_one_chunk_are_all_returned() {
        assert_eq!(
            lines_of(&[b"1\n2\n3\n"]),
            vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_kept_at_the_end() {
        assert_eq!(lines_of(&[b"1\n2"]), vec![b"1".to_vec(), b"2".to_vec()]);
        let mut buffer = LineBuffer::default();
        buffer.push(b"partial");
        assert_eq!(buffer.next_line(), None);
        assert_eq!(buffer.finish(), Some(b"partial".to_vec()));
        assert_eq!(buffer.finish(), None);
    }
}
