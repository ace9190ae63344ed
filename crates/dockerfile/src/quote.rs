//! Go's `strconv.Quote`, which BuildKit's dump uses for every string.
//!
//! Printable characters are written as is; the rest as `\a`-style escapes,
//! `\xNN` (ASCII controls), `\uNNNN` or `\UNNNNNNNN`. Go's printable set is
//! "letters, marks, numbers, punctuation, symbols and ASCII space"; without a
//! Unicode category table this module treats control, format, separator,
//! private-use and non-character code points as non-printable, which agrees
//! with Go on every assigned code point we know of (unassigned ones differ).

/// Quotes `s` as Go's `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(s, &mut out);
    out
}

/// Appends `s` quoted as Go's `strconv.Quote` does to `out`.
pub(crate) fn go_quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint` for non-ASCII characters (see the module docs).
fn is_print(c: char) -> bool {
    let u = c as u32;
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    const NON_PRINT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x206F),
        (0xD800, 0xF8FF),
        (0xFDD0, 0xFDEF),
        (0xFEFF, 0xFEFF),
        (0xFFF0, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
        (0xF0000, 0x10FFFF),
    ];
    if (u & 0xFFFE) == 0xFFFE {
        return false;
    }
    !NON_PRINT.iter().any(|&(lo, hi)| lo <= u && u <= hi)
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{7f}\t\n"), r#""\x00\x7f\t\n""#);
        assert_eq!(go_quote("♥☃ 안녕"), "\"♥☃ 안녕\"");
        assert_eq!(go_quote("\u{a0}\u{feff}\u{85}"), r#""\u00a0\ufeff\u0085""#);
        assert_eq!(go_quote("\u{10ffff}"), r#""\U0010ffff""#);
        assert_eq!(go_quote("it's"), r#""it's""#);
    }
}
