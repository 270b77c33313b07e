//! Client input as a log line shows it: control and invisible formatting characters escaped
//! and the length capped, so that a client can neither forge log lines (a client id with a
//! newline and a made-up line after it) nor grow the log by what it sends.

use std::fmt::{self, Display, Write};

/// Characters of client input a log line shows; what follows is counted, not shown.
pub const SHOWN_CHARS: usize = 64;

/// `s` as a log may show it: at most [`SHOWN_CHARS`] characters, the rest counted in bytes;
/// control characters, the backslash and the invisible characters that reorder or hide
/// text escaped the way Rust writes them (`\n`, `\u{202e}`).
pub struct Untrusted<'a>(pub &'a str);

fn escaped(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

impl Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (i, c)) in self.0.char_indices().enumerate() {
            if n == SHOWN_CHARS {
                return write!(f, "...(+{} bytes)", self.0.len() - i);
            }
            if escaped(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_line_stays_on_its_line() {
        let shown = Untrusted("d1\n2026-12-05T00:00:00Z  INFO herald: admin signed in\r\u{1b}[2J\\").to_string();
        assert_eq!(shown, "d1\\n2026-12-05T00:00:00Z  INFO herald: admin signed in\\r\\u{1b}[2J\\\\");
        assert_eq!(Untrusted("abc\u{202e}fed").to_string(), "abc\\u{202e}fed");
        assert_eq!(Untrusted("ünïcode ok").to_string(), "ünïcode ok");
    }

    #[test]
    fn long_input_is_cut_and_counted() {
        let long = "x".repeat(65_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown, format!("{}...(+{} bytes)", "x".repeat(SHOWN_CHARS), 65_000 - SHOWN_CHARS));
        assert_eq!(Untrusted(&"y".repeat(SHOWN_CHARS)).to_string(), "y".repeat(SHOWN_CHARS));
    }
}
