//! The exec-form JSON array, read as BuildKit (Go's `encoding/json`) reads it.
//!
//! The whole text must be one valid JSON value: a valid array of strings is
//! exec form; a valid array holding anything else is an error; anything
//! invalid falls back to shell form. Lone surrogate escapes decode to U+FFFD
//! as in Go. Nesting is checked without recursion, so deep input cannot
//! overflow the stack.

/// What the text after an instruction's flags is, as JSON.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArgs {
    /// A valid array of strings.
    Strings(Vec<String>),
    /// A valid JSON array with a non-string element.
    NotStrings,
    /// Not a valid JSON array: the caller falls back to shell form.
    Invalid,
}

const MAX_DEPTH: usize = 10_000;

/// Reads `rest` (already left-trimmed) as a JSON array.
pub(crate) fn parse_json_array(rest: &str) -> JsonArgs {
    let b = rest.as_bytes();
    if b.first() != Some(&b'[') {
        return JsonArgs::Invalid;
    }
    let mut p = Reader { b, pos: 1 };
    let mut out = Vec::new();
    let mut all_strings = true;
    p.ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(s) => out.push(s),
                    None => return JsonArgs::Invalid,
                }
            } else {
                all_strings = false;
                if p.skip_value().is_none() {
                    return JsonArgs::Invalid;
                }
            }
            p.ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b']') => {
                    p.pos += 1;
                    break;
                }
                _ => return JsonArgs::Invalid,
            }
        }
    }
    p.ws();
    if p.pos != b.len() {
        return JsonArgs::Invalid;
    }
    if all_strings {
        JsonArgs::Strings(out)
    } else {
        JsonArgs::NotStrings
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn lit(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.pos..self.pos + 4)?;
        let s = std::str::from_utf8(h).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(s, 16).ok()
    }

    /// A string starting at `"`, decoded.
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is a str and we stop only on ASCII bytes: a boundary.
            out.push_str(std::str::from_utf8(&self.b[start..self.pos]).ok()?);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek()?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xD800..0xDC00).contains(&u) {
                                // A high surrogate: use the pair if a low one follows.
                                let save = self.pos;
                                if self.b[self.pos..].starts_with(b"\\u") {
                                    self.pos += 2;
                                    if let Some(l) =
                                        self.hex4().filter(|l| (0xDC00..0xE000).contains(l))
                                    {
                                        let c = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                                        out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                        continue;
                                    }
                                }
                                self.pos = save;
                                out.push('\u{fffd}');
                            } else {
                                out.push(char::from_u32(u).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return None,
                    }
                }
                _ => return None, // control character
            }
        }
    }

    /// Skips any JSON value; iterative, depth-limited.
    fn skip_value(&mut self) -> Option<()> {
        let mut stack: Vec<u8> = Vec::new();
        'value: loop {
            self.ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'[' | b'{' => {
                    let open = self.b[self.pos];
                    self.pos += 1;
                    self.ws();
                    let close = if open == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            return None;
                        }
                        stack.push(open);
                        if open == b'{' {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                b't' => self.lit(b"true")?,
                b'f' => self.lit(b"false")?,
                b'n' => self.lit(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close containers or go to the next element.
            loop {
                self.ws();
                let Some(&top) = stack.last() else {
                    return Some(());
                };
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if top == b'{' {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    b']' if top == b'[' => {
                        self.pos += 1;
                        stack.pop();
                    }
                    b'}' if top == b'{' => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"key" :` inside an object.
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.string()?;
        self.ws();
        if self.peek() != Some(b':') {
            return None;
        }
        self.pos += 1;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArgs {
        JsonArgs::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays() {
        assert_eq!(parse_json_array("[]"), strings(&[]));
        assert_eq!(
            parse_json_array("[ \"a\",\t\"b\" ]  "),
            strings(&["a", "b"])
        );
        assert_eq!(
            parse_json_array(r#"["\u2603\/\u0000"]"#),
            strings(&["☃/\0"])
        );
        assert_eq!(parse_json_array(r#"["\ud800x"]"#), strings(&["\u{fffd}x"]));
        assert_eq!(parse_json_array(r#"["\ud83d\ude00"]"#), strings(&["😀"]));
        assert_eq!(parse_json_array(r#"["a", ["b"]]"#), JsonArgs::NotStrings);
        assert_eq!(
            parse_json_array(r#"["a", {"k": [1, 2.5e3, null]}]"#),
            JsonArgs::NotStrings
        );
        assert_eq!(parse_json_array("['a']"), JsonArgs::Invalid);
        assert_eq!(parse_json_array(r#"["a""#), JsonArgs::Invalid);
        assert_eq!(parse_json_array(r#"["a"] x"#), JsonArgs::Invalid);
        assert_eq!(parse_json_array(r#"[1, "a""#), JsonArgs::Invalid);
        assert_eq!(parse_json_array(r#"[01]"#), JsonArgs::Invalid);
        let deep = "[".repeat(100_000);
        assert_eq!(parse_json_array(&deep), JsonArgs::Invalid);
    }
}
