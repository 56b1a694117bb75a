//! tracing subscriber: human-readable or JSON lines, filter from config or
//! RUST_LOG. Log lines never carry raw client bytes: in the human format a
//! control character inside a line (a bare CR, ESC sequences that would
//! move the terminal's cursor or forge a line) is written as `\xNN`, as the
//! JSON writer escapes it.

use std::io::Write;
use tracing_subscriber::EnvFilter;

pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" {
        builder
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .try_init()
    } else {
        builder
            .with_writer(|| Escaping(std::io::stderr()))
            .with_ansi(false)
            .try_init()
    };
}

/// A writer that escapes control characters (all but HTAB, and the LF that
/// ends a line) as `\xNN`. The fmt layer writes each event as one buffer.
pub struct Escaping<W: Write>(pub W);

/// `line` with its control characters escaped.
pub fn escape_controls(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let last = line.len().saturating_sub(1);
    for (i, &b) in line.iter().enumerate() {
        let control = (b < 0x20 && b != b'\t') || b == 0x7f;
        if control && !(b == b'\n' && i == last) {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(b);
        }
    }
    out
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escape_controls(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_inside_a_line_are_escaped() {
        let forged = "INFO new call from=\"Bob\u{1b}[2J\rWARN forged\" to=é\tx\n";
        let out = String::from_utf8(escape_controls(forged.as_bytes())).unwrap();
        assert_eq!(
            out, "INFO new call from=\"Bob\\x1b[2J\\x0dWARN forged\" to=é\tx\n",
            "ESC and CR escaped, UTF-8 and HTAB kept, the final LF kept"
        );
        assert_eq!(escape_controls(b"a\nb\n"), b"a\\x0ab\n");
        assert_eq!(escape_controls(b"\x00\x07\x7f"), b"\\x00\\x07\\x7f");
    }

    #[test]
    fn the_writer_passes_escaped_bytes_on() {
        let mut w = Escaping(Vec::new());
        w.write_all(b"x\x1by\n").unwrap();
        assert_eq!(w.0, b"x\\x1by\n");
    }
}
