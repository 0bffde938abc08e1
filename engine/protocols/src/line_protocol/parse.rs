//! The line protocol grammar, in one pass over the body.
//!
//! It accepts what InfluxDB's Go parser accepts and reads it the same way:
//! the `influxdb-line-protocol` crate (IOx's port of that parser) is the
//! oracle its tests hold it to, line by line, on generated input. It exists
//! because that crate costs ~1.8 µs a line here (each line is scanned twice
//! and its parsed form moved by value through nom combinators), six times
//! what the whole native protobuf decode costs. This one borrows every name
//! and string from the body unless it is escaped, and fills a [`Line`] whose
//! vectors are reused, so a line allocates nothing once warm.
//!
//! The rules, as the Go parser has them:
//! - `measurement[,tag=value…] field=value[,field=value…] [timestamp]`,
//!   separated by spaces (tabs are not separators); blank lines and lines
//!   starting with `#` (after spaces or tabs) are skipped.
//! - A backslash escapes `,` ` ` `\` in a measurement, and those and `=` in
//!   tag keys, tag values and field keys; before any other character it is
//!   kept as written, with that character. A name may not end in `\`.
//! - Field values: `-?\d+i` is an i64, `\d+u` a u64, `-?\d+(\.\d+)?([eE][+-]?\d+)?`
//!   an f64, `t T true True TRUE f F false False FALSE` a bool, `"…"` a
//!   string in which only `\"` and `\\` are escapes (and may hold newlines).
//! - The timestamp is `-?\d+` and may be followed by spaces, nothing else.

use std::borrow::Cow;

/// A field's value, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    String(Cow<'a, str>),
}

/// One parsed line. [`Lines::next`] overwrites it, reusing its vectors.
#[derive(Debug, Default)]
pub(crate) struct Line<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    pub timestamp: Option<i64>,
}

/// The lines of a body, parsed one at a time.
pub(crate) struct Lines<'a> {
    text: &'a str,
    at: usize,
    number: usize,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            at: 0,
            number: 0,
        }
    }

    /// Parses the next line that is not blank or a comment into `line`, and
    /// returns its number (from 1, counting every line of the body) with
    /// what was wrong with it, if anything. `None` at the end of the body.
    pub fn next(&mut self, line: &mut Line<'a>) -> Option<(usize, Result<(), String>)> {
        let bytes = self.text.as_bytes();
        loop {
            if self.at >= bytes.len() {
                return None;
            }
            let start = self.at;
            self.number += 1;
            let mut i = start;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            match bytes.get(i) {
                None => {
                    self.at = i;
                    return None;
                }
                Some(b'\n') => {
                    self.at = i + 1;
                    continue;
                }
                Some(b'#') => {
                    self.at = line_end(bytes, start) + 1;
                    continue;
                }
                Some(_) => {}
            }
            let mut parser = Parser {
                text: self.text,
                bytes,
                at: i,
                confusable: false,
            };
            let parsed = parser.line(line);
            let outcome = match parsed {
                // The Go parser finds a line's end before it parses it, by
                // a scan that tracks quotes only roughly. Where the two can
                // disagree (a string holding a newline, a field key holding
                // `,` or `"`), the scan decides, as it does there.
                Ok(()) if parser.confusable && line_end(bytes, start) != parser.at => Err(
                    "cannot parse the entire line: a field key with `,` or `\"`, or a \
                         string with a newline, that the line split reads differently; \
                         escape it"
                        .to_string(),
                ),
                other => other,
            };
            self.at = match outcome {
                Ok(()) => parser.at + 1,
                Err(_) => line_end(bytes, start) + 1,
            };
            return Some((self.number, outcome));
        }
    }
}

/// Where the line starting at `start` ends (its `\n`, or the body's end):
/// a port of the Go parser's `scanLine`, which ignores newlines that are
/// escaped or inside what it takes for a quoted string.
fn line_end(bytes: &[u8], start: usize) -> usize {
    let (mut quoted, mut fields, mut escaped) = (false, false, false);
    let (mut equals, mut commas) = (0usize, 0usize);
    for (i, &c) in bytes.iter().enumerate().skip(start) {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            b'\\' => escaped = true,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return i,
            _ => {}
        }
    }
    bytes.len()
}

/// What ends a name, and what a backslash escapes in it.
#[derive(Clone, Copy)]
enum Name {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Name {
    fn ends_at(self, c: u8) -> bool {
        match self {
            Name::Measurement => matches!(c, b' ' | b'\t' | b'\n' | b',' | b'\0'),
            Name::TagKey | Name::FieldKey => matches!(c, b' ' | b'\t' | b'\n' | b'='),
            Name::TagValue => matches!(c, b' ' | b'\t' | b'\n' | b','),
        }
    }

    fn escapes(self, c: u8) -> bool {
        match self {
            Name::Measurement => matches!(c, b',' | b' ' | b'\\'),
            _ => matches!(c, b',' | b' ' | b'\\' | b'='),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Name::Measurement => "measurement",
            Name::TagKey => "tag key",
            Name::TagValue => "tag value",
            Name::FieldKey => "field key",
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The line has something the Go line split may read differently.
    confusable: bool,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn at_line_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n'))
    }

    /// `text[from..to]`; both are next to ASCII bytes or the ends, so on
    /// character boundaries, but a slip is an error here, not a panic.
    fn slice(&self, from: usize, to: usize) -> Result<&'a str, String> {
        self.text
            .get(from..to)
            .ok_or_else(|| format!("internal: no character boundary at {from}..{to}"))
    }

    fn line(&mut self, line: &mut Line<'a>) -> Result<(), String> {
        line.tags.clear();
        line.fields.clear();
        line.timestamp = None;
        line.measurement = self.name(Name::Measurement)?;
        if self.peek() == Some(b',') {
            self.at += 1;
            loop {
                let key = self.name(Name::TagKey)?;
                self.expect(b'=', "`=` after a tag key")?;
                let value = self.name(Name::TagValue)?;
                line.tags.push((key, value));
                if self.peek() != Some(b',') {
                    break;
                }
                self.at += 1;
            }
        }
        if !self.spaces() {
            return Err(match self.peek() {
                None | Some(b'\n') => "no fields".to_string(),
                Some(c) => format!(
                    "expected a space before the fields, found {:?}",
                    char::from(c)
                ),
            });
        }
        loop {
            line.fields.push(self.field()?);
            if self.peek() != Some(b',') {
                break;
            }
            self.at += 1;
            // The oracle ignores a comma after the first field that no
            // field follows (`m v=1, 5`); so does this parser, so that the
            // two accept the same lines.
            if line.fields.len() == 1 && matches!(self.peek(), None | Some(b' ' | b'\n')) {
                break;
            }
        }
        if self.at_line_end() {
            return Ok(());
        }
        if !self.spaces() {
            return Err(self.trailing());
        }
        let digits = self.integer(true);
        if digits.is_empty() {
            return Err(self.trailing());
        }
        let text = self.slice(digits.start, digits.end)?;
        let timestamp = text
            .parse::<i64>()
            .map_err(|_| format!("timestamp {text} does not fit in 64 bits"))?;
        self.spaces();
        if !self.at_line_end() {
            return Err(self.trailing());
        }
        line.timestamp = Some(timestamp);
        Ok(())
    }

    fn trailing(&self) -> String {
        let end = line_end(self.bytes, self.at);
        let rest = self.text.get(self.at..end).unwrap_or("");
        let rest: String = rest.chars().take(40).collect();
        format!("cannot parse the entire line: found {rest:?} after the fields")
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    /// `key=value`.
    fn field(&mut self) -> Result<(Cow<'a, str>, FieldValue<'a>), String> {
        let key = self.name(Name::FieldKey)?;
        if key.contains([',', '"']) {
            self.confusable = true;
        }
        self.expect(b'=', "`=` after a field key")?;
        Ok((key, self.field_value()?))
    }

    /// Skips spaces; whether there were any.
    fn spaces(&mut self) -> bool {
        let from = self.at;
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
        self.at > from
    }

    /// A name, unescaped: borrowed from the body unless an escape changed it.
    fn name(&mut self, kind: Name) -> Result<Cow<'a, str>, String> {
        let start = self.at;
        let mut owned: Option<String> = None;
        let mut piece = start;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                match self.bytes.get(self.at + 1) {
                    Some(&next) if kind.escapes(next) => {
                        let buf = owned.get_or_insert_with(String::new);
                        buf.push_str(self.slice(piece, self.at)?);
                        buf.push(char::from(next));
                        self.at += 2;
                        piece = self.at;
                    }
                    // Any other character after a backslash is kept with it,
                    // even one that would end the name.
                    Some(_) => {
                        self.at += 2;
                        // ... all of it, if it is more than one byte.
                        while self.peek().is_some_and(|b| b & 0xC0 == 0x80) {
                            self.at += 1;
                        }
                    }
                    None => self.at += 1,
                }
            } else if kind.ends_at(c) {
                break;
            } else {
                self.at += 1;
            }
        }
        if self.at == start {
            return Err(format!("missing {}", kind.what()));
        }
        let name = match owned {
            Some(mut buf) => {
                buf.push_str(self.slice(piece, self.at)?);
                Cow::Owned(buf)
            }
            None => Cow::Borrowed(self.slice(start, self.at)?),
        };
        if name.ends_with('\\') {
            return Err(format!("{} {name:?} ends with a backslash", kind.what()));
        }
        Ok(name)
    }

    /// `-?\d+` (the sign only if `signed`) from here; empty if none.
    fn integer(&mut self, signed: bool) -> std::ops::Range<usize> {
        let start = self.at;
        let mut i = start;
        if signed && self.bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = i;
        while self.bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits {
            return start..start;
        }
        self.at = i;
        start..i
    }

    fn field_value(&mut self) -> Result<FieldValue<'a>, String> {
        if self.peek() == Some(b'"') {
            return self.string().map(FieldValue::String);
        }
        let start = self.at;
        while !matches!(self.peek(), None | Some(b',' | b' ' | b'\n')) {
            self.at += 1;
        }
        let token = self.slice(start, self.at)?;
        let invalid = || format!("invalid field value {token:?}");
        Ok(match token {
            "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Bool(true),
            "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Bool(false),
            _ => match token.as_bytes().last() {
                Some(b'i') => {
                    let digits = &token[..token.len() - 1];
                    if !is_integer(digits, true) {
                        return Err(invalid());
                    }
                    FieldValue::I64(digits.parse().map_err(|_| {
                        format!("integer {digits} does not fit in a signed 64-bit integer")
                    })?)
                }
                Some(b'u') => {
                    let digits = &token[..token.len() - 1];
                    if !is_integer(digits, false) {
                        return Err(invalid());
                    }
                    FieldValue::U64(digits.parse().map_err(|_| {
                        format!("integer {digits} does not fit in an unsigned 64-bit integer")
                    })?)
                }
                _ if is_float(token) => FieldValue::F64(token.parse().map_err(|_| invalid())?),
                _ => return Err(invalid()),
            },
        })
    }

    /// A quoted string; `\"` and `\\` are its only escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.at += 1; // the opening quote
        let start = self.at;
        let mut owned: Option<String> = None;
        let mut piece = start;
        loop {
            match self.peek() {
                None => return Err("a string field value is not closed".to_string()),
                Some(b'"') => break,
                Some(b'\\') if matches!(self.bytes.get(self.at + 1), Some(b'"' | b'\\')) => {
                    let buf = owned.get_or_insert_with(String::new);
                    buf.push_str(self.slice(piece, self.at)?);
                    buf.push(char::from(self.bytes[self.at + 1]));
                    self.at += 2;
                    piece = self.at;
                }
                Some(c) => {
                    if c == b'\n' {
                        self.confusable = true;
                    }
                    self.at += 1;
                }
            }
        }
        let value = match owned {
            Some(mut buf) => {
                buf.push_str(self.slice(piece, self.at)?);
                Cow::Owned(buf)
            }
            None => Cow::Borrowed(self.slice(start, self.at)?),
        };
        self.at += 1; // the closing quote
        Ok(value)
    }
}

/// `-?\d+` (the sign only if `signed`), the whole of `text`.
fn is_integer(text: &str, signed: bool) -> bool {
    let digits = match text.strip_prefix('-') {
        Some(rest) if signed => rest,
        _ => text,
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `-?\d+(\.\d+)?([eE][+-]?\d+)?`, the whole of `text`.
fn is_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests;
