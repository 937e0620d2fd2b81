//! Bounds on an uploaded CSV, applied to the bytes before the CSV reader sees them, so that
//! memory stays flat whatever arrives: the reader holds one record at a time, and no record is
//! longer than [`MAX_ROW_BYTES`]. A longer row is dropped as it streams by and replaced by a
//! one-field row holding [`OVERLONG_ROW`] (spanning as many lines as the row did, so line
//! numbers stay true), which the import reports as a per-line error. An upload past its limit
//! ends the stream with [`UploadTooLarge`].

use axum::body::Bytes;
use futures::{Stream, StreamExt};

/// The longest row taken (a real one is a few hundred bytes).
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// What an overlong row becomes. A NUL cannot start an address, a name or a date.
pub const OVERLONG_ROW: &str = "\0row longer than 64 KiB\0";

/// The error that ends an upload past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the upload is larger than {limit} bytes")]
pub struct UploadTooLarge {
    pub limit: u64,
}

/// Splits `body` into whole rows (a newline inside quotes does not end one), passing rows of
/// up to [`MAX_ROW_BYTES`] through unchanged, replacing longer ones, and failing once more than
/// `limit` bytes arrived.
pub fn bounded_rows<S, E>(body: S, limit: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error + Send + Sync + 'static,
{
    let state = (body, Rows::default(), 0u64, false);
    futures::stream::unfold(state, move |(mut body, mut rows, mut total, ended)| async move {
        if ended {
            return None;
        }
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    if total > limit {
                        let error = std::io::Error::other(UploadTooLarge { limit });
                        return Some((Err(error), (body, rows, total, true)));
                    }
                    let out = rows.feed(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), (body, rows, total, false)));
                    }
                }
                Some(Err(e)) => return Some((Err(std::io::Error::other(e)), (body, rows, total, true))),
                None => {
                    let out = rows.finish();
                    return (!out.is_empty()).then(|| (Ok(Bytes::from(out)), (body, rows, total, true)));
                }
            }
        }
    })
}

/// The row being read: its bytes so far, or, once it is too long, how many line breaks it
/// spanned while it was being skipped.
#[derive(Default)]
struct Rows {
    row: Vec<u8>,
    in_quotes: bool,
    skipping: Option<usize>,
}

impl Rows {
    /// Takes a chunk; gives the rows it completed. Only quotes and line breaks matter: the
    /// bytes between them are copied as runs.
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < chunk.len() {
            let special = memchr::memchr2(b'"', b'\n', &chunk[at..]).map(|p| at + p);
            let end = special.map_or(chunk.len(), |p| p + 1);
            if self.skipping.is_none() {
                self.row.extend_from_slice(&chunk[at..end]);
                if self.row.len() > MAX_ROW_BYTES {
                    // The breaks the row spanned so far; the one just read is counted below.
                    let before = &self.row[..self.row.len() - usize::from(special.is_some())];
                    self.skipping = Some(before.iter().filter(|&&c| c == b'\n').count());
                    self.row = Vec::new();
                }
            }
            at = end;
            match special.map(|p| chunk[p]) {
                Some(b'"') => self.in_quotes = !self.in_quotes,
                Some(_) if self.in_quotes => {
                    if let Some(breaks) = &mut self.skipping {
                        *breaks += 1;
                    }
                }
                Some(_) => match self.skipping.take() {
                    Some(breaks) => {
                        overlong_row(&mut out, breaks);
                        out.push(b'\n');
                    }
                    None => out.append(&mut self.row),
                },
                None => {}
            }
        }
        out
    }

    /// The end of the upload: the last row, if it had no line break after it.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.row);
        if let Some(breaks) = self.skipping.take() {
            overlong_row(&mut out, breaks);
        }
        out
    }
}

/// A quoted one-field row holding [`OVERLONG_ROW`] and `breaks` line breaks.
fn overlong_row(out: &mut Vec<u8>, breaks: usize) {
    out.push(b'"');
    out.extend_from_slice(OVERLONG_ROW.as_bytes());
    out.extend(std::iter::repeat_n(b'\n', breaks));
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut rows = Rows::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            out.extend(rows.feed(c));
        }
        out.extend(rows.finish());
        out
    }

    #[test]
    fn short_rows_pass_unchanged_whatever_the_chunks() {
        let csv = b"email,name\na@example.org,\"Two\nLines\"\nb@example.org,B";
        for chunk in [1, 3, 7, 1000] {
            assert_eq!(split(csv, chunk), csv.to_vec(), "chunks of {chunk}");
        }
    }

    #[test]
    fn an_overlong_row_keeps_its_line_count() {
        let long = "x".repeat(MAX_ROW_BYTES + 1);
        let csv = format!("email\n\"{long}\n{long}\"\nb@example.org\n");
        let out = String::from_utf8(split(csv.as_bytes(), 4096)).unwrap();
        assert_eq!(out, format!("email\n\"{OVERLONG_ROW}\n\"\nb@example.org\n"));
        assert_eq!(out.matches('\n').count(), csv.matches('\n').count());
    }
}
