//! A process's output as log messages: the one reader the dyno manager, one-off dynos and
//! builds share. Output is read line by line with a bound, so a process printing megabytes
//! without a newline cannot make the server buffer them: a long line comes out in pieces as
//! it arrives, never cut inside a UTF-8 character.

use kiln_model::LogLine;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

/// A pipe from a process: its stdout or stderr.
pub type Output = Box<dyn AsyncRead + Unpin + Send>;

/// The most of one line held in memory; longer lines are passed on in pieces of this size
/// (which [`LogLine::split_output`] then cuts to Logplex's 10 000 bytes).
pub const MAX_LINE: usize = 16 * 1024;

/// Reads `r` to its end, passing each line's log messages to `emit` as they come (lines
/// over [`kiln_model::log::MAX_LINE_BYTES`] in several, invalid UTF-8 replaced).
pub async fn for_each_message(r: impl AsyncRead + Unpin, mut emit: impl FnMut(String)) {
    for_each_batch(r, |batch| batch.into_iter().for_each(&mut emit)).await;
}

/// Messages passed on together at most.
const BATCH: usize = 1024;
/// What one read of the pipe may bring: a pipe's default capacity.
const READ: usize = 64 * 1024;

/// Reads `r` to its end, passing its log messages to `emit` a read at a time: every whole
/// line that one read of the pipe brought goes in one call, so that the log stream locks
/// and wakes its readers once per read rather than once per line. A line still being
/// written is never waited for: what is whole goes at once.
pub async fn for_each_batch(r: impl AsyncRead + Unpin, mut emit: impl FnMut(Vec<String>)) {
    let mut reader = BufReader::with_capacity(READ, r);
    let mut line = Vec::new();
    let mut batch = Vec::new();
    while let Ok(true) = next_line(&mut reader, &mut line).await {
        batch.extend(LogLine::split_output(&line));
        // Lines already read and whole: `next_line` takes them without waiting.
        while batch.len() < BATCH && reader.buffer().contains(&b'\n') {
            match next_line(&mut reader, &mut line).await {
                Ok(true) => batch.extend(LogLine::split_output(&line)),
                _ => break,
            }
        }
        emit(std::mem::take(&mut batch));
    }
}

/// Reads the next line (without its newline) into `line`, or its first [`MAX_LINE`] bytes
/// (fewer, to end on a whole UTF-8 character); `false` at the end of the output.
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let room = MAX_LINE - line.len();
        let window = &available[..available.len().min(room)];
        if let Some(end) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..end]);
            reader.consume(end + 1);
            return Ok(true);
        }
        if window.len() < room {
            let n = window.len();
            line.extend_from_slice(window);
            reader.consume(n);
            continue;
        }
        // The line is full: end it before a character the window cuts in two, which then
        // starts the next piece.
        let cut = room - incomplete_tail(window);
        let cut = if cut == 0 && line.is_empty() {
            room
        } else {
            cut
        };
        line.extend_from_slice(&window[..cut]);
        reader.consume(cut);
        return Ok(true);
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character that goes on
/// past it (0 when it ends on a whole character, or is not UTF-8 there anyway).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if len > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = BufReader::with_capacity(1000, input);
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while next_line(&mut reader, &mut line).await.unwrap() {
            lines.push(line.clone());
        }
        lines
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut input = b"first\nsecond\r\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 2 + 10));
        input.extend_from_slice(b"\nlast");
        let lines = lines_of(&input).await;
        assert_eq!(lines[0], b"first");
        assert_eq!(lines[1], b"second\r");
        assert_eq!(lines[2], b"");
        assert_eq!(
            (lines[3].len(), lines[4].len(), lines[5].len()),
            (MAX_LINE, MAX_LINE, 10)
        );
        assert_eq!(lines[6], b"last");
        assert_eq!(lines.len(), 7);
    }

    #[tokio::test]
    async fn long_lines_are_not_cut_inside_a_character() {
        // "é" is two bytes, "€" three, "𝄞" four: at every offset, a piece ends on a whole one.
        for (ch, pad) in [("é", 1), ("€", 1), ("€", 2), ("𝄞", 1), ("𝄞", 2), ("𝄞", 3)]
        {
            let text = format!("{}{}", "a".repeat(pad), ch.repeat(MAX_LINE));
            let lines = lines_of(text.as_bytes()).await;
            assert!(
                lines
                    .iter()
                    .all(|l| l.len() <= MAX_LINE && std::str::from_utf8(l).is_ok()),
                "{ch} after {pad}"
            );
            assert_eq!(lines.concat(), text.as_bytes());
        }
        // Not UTF-8 at all: cut at the limit, every byte kept.
        let binary: Vec<u8> = std::iter::repeat_n([0xff_u8, 0xe2], MAX_LINE)
            .flatten()
            .collect();
        let lines = lines_of(&binary).await;
        assert_eq!(lines.concat(), binary);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));
    }

    #[tokio::test]
    async fn output_without_newlines_is_passed_on_while_it_runs() {
        // A process that prints without end and never a newline: its messages arrive while
        // the pipe is still open, none longer than Logplex's limit.
        let (mut process, pipe) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(for_each_message(pipe, move |m| {
            let _ = tx.send(m);
        }));
        let writer = tokio::spawn(async move {
            let chunk = vec![b'y'; 8192];
            for _ in 0..64 {
                if process.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        });
        let mut received = 0;
        while received < 256 * 1024 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("a message while the pipe is open")
                .unwrap();
            assert!(m.len() <= kiln_model::log::MAX_LINE_BYTES);
            received += m.len();
        }
        writer.abort();
        reader.abort();
    }
}
