//! Escape sequences (HL7 v2 chapter 2, "Use of escape sequences in text fields").
//!
//! Decoding works on bytes and runs before character-set decoding, because `\Xhh\` yields bytes
//! in the message's character set. The table, with `\` standing for the message's escape
//! character:
//!
//! | escape | decoded as |
//! |---|---|
//! | `\F\ \S\ \T\ \R\ \E\` | the field, component, subcomponent, repetition, escape character |
//! | `\P\` | the truncation character (v2.7+; passed through when MSH-2 has none) |
//! | `\Xhhhh..\` | the bytes `hh hh ..` (passed through when the hex is malformed) |
//! | `\.br\` | a line break (`\n`) |
//! | `\.sp\`, `\.sp n\` | `n` line breaks (one when `n` is absent) |
//! | `\.sk n\` | `n` spaces |
//! | `\.ce\` | a line break (the next line is centered) |
//! | `\H\ \N\ \.fi\ \.nf\ \.in n\ \.ti n\` | nothing: highlighting, fill mode and indents are layout, not text |
//! | `\Zxx\`, `\Cxxyy\`, `\Mxxyyzz\`, anything else | itself, unchanged |
//!
//! An escape character with no closing partner is kept as a literal character. Encoding escapes
//! exactly the delimiters, the escape and truncation characters, and line breaks (`\n` and `\r\n`
//! as `\.br\`, a lone `\r` as `\X0D\`): the least that keeps the value intact.

use std::borrow::Cow;

use super::delimiters::Delimiters;
use super::error::Error;

/// Replaces escape sequences in `raw` by what they stand for (see the module table).
pub fn decode<'a>(raw: &'a [u8], d: &Delimiters) -> Cow<'a, [u8]> {
    let esc = match d.escape {
        Some(e) => e,
        None => return Cow::Borrowed(raw),
    };
    let first = match memchr::memchr(esc, raw) {
        Some(i) => i,
        None => return Cow::Borrowed(raw),
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        let b = raw[i];
        if b != esc {
            out.push(b);
            i += 1;
            continue;
        }
        let close = match memchr::memchr(esc, &raw[i + 1..]) {
            Some(j) => i + 1 + j,
            None => {
                // An unterminated escape is literal text: keep the rest as it is.
                out.extend_from_slice(&raw[i..]);
                break;
            }
        };
        let body = &raw[i + 1..close];
        if !decode_one(body, d, &mut out) {
            out.extend_from_slice(&raw[i..=close]);
        }
        i = close + 1;
    }
    Cow::Owned(out)
}

/// Decodes one escape body (between the escape characters); false means "pass it through".
fn decode_one(body: &[u8], d: &Delimiters, out: &mut Vec<u8>) -> bool {
    match body {
        b"F" => out.push(d.field),
        b"S" => out.push(d.component),
        b"T" => match d.subcomponent {
            Some(c) => out.push(c),
            None => return false,
        },
        b"R" => match d.repetition {
            Some(c) => out.push(c),
            None => return false,
        },
        b"E" => match d.escape {
            Some(c) => out.push(c),
            None => return false,
        },
        b"P" => match d.truncation {
            Some(c) => out.push(c),
            None => return false,
        },
        b"H" | b"N" => {}
        [b'X', hex @ ..] => {
            if hex.is_empty() || hex.len() % 2 != 0 {
                return false;
            }
            let start = out.len();
            for pair in hex.chunks_exact(2) {
                match (hex_val(pair[0]), hex_val(pair[1])) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => {
                        out.truncate(start);
                        return false;
                    }
                }
            }
        }
        [b'.', cmd @ ..] => return decode_format(cmd, out),
        _ => return false,
    }
    true
}

/// Decodes a formatting command (`.br`, `.sp n`, ...) into plain text.
fn decode_format(cmd: &[u8], out: &mut Vec<u8>) -> bool {
    let (name, arg) = cmd.split_at(cmd.len().min(2));
    let arg = std::str::from_utf8(arg).ok().map(str::trim);
    let count = |default: usize| -> Option<usize> {
        match arg {
            None => None,
            Some("") => Some(default),
            Some(a) => a
                .trim_start_matches('+')
                .parse::<usize>()
                .ok()
                .map(|n| n.min(1000)),
        }
    };
    match name {
        b"br" if arg == Some("") => out.push(b'\n'),
        b"ce" if arg == Some("") => out.push(b'\n'),
        b"fi" | b"nf" if arg == Some("") => {}
        b"sp" => match count(1) {
            Some(n) => out.extend(std::iter::repeat_n(b'\n', n.max(1))),
            None => return false,
        },
        b"sk" => match count(1) {
            Some(n) => out.extend(std::iter::repeat_n(b' ', n)),
            None => return false,
        },
        b"in" | b"ti" => {
            let valid = arg.is_some_and(|a| {
                let a = a.trim_start_matches(['+', '-']);
                a.is_empty() || a.bytes().all(|c| c.is_ascii_digit())
            });
            if !valid {
                return false;
            }
        }
        _ => return false,
    }
    true
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Escapes text bytes (already in the message's character set) for use as one value.
///
/// Fails only when the value holds a delimiter and MSH-2 defines no escape character.
pub fn encode<'a>(text: &'a [u8], d: &Delimiters) -> Result<Cow<'a, [u8]>, Error> {
    let needs = |b: u8| d.is_special(b) || b == b'\r' || b == b'\n';
    let first = match text.iter().position(|&b| needs(b)) {
        Some(i) => i,
        None => return Ok(Cow::Borrowed(text)),
    };
    let esc = match d.escape {
        Some(e) => e,
        None => {
            return Err(Error::Unrepresentable {
                ch: text[first] as char,
                charset: "this message (MSH-2 defines no escape character)",
            })
        }
    };
    let mut out = Vec::with_capacity(text.len() + 8);
    out.extend_from_slice(&text[..first]);
    let mut i = first;
    while i < text.len() {
        let b = text[i];
        i += 1;
        let code: &[u8] = if b == d.field {
            b"F"
        } else if b == d.component {
            b"S"
        } else if Some(b) == d.subcomponent {
            b"T"
        } else if Some(b) == d.repetition {
            b"R"
        } else if b == esc {
            b"E"
        } else if Some(b) == d.truncation {
            b"P"
        } else if b == b'\n' {
            b".br"
        } else if b == b'\r' {
            if text.get(i) == Some(&b'\n') {
                i += 1;
                b".br"
            } else {
                b"X0D"
            }
        } else {
            out.push(b);
            continue;
        };
        out.push(esc);
        out.extend_from_slice(code);
        out.push(esc);
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> String {
        String::from_utf8(decode(s.as_bytes(), &Delimiters::default()).into_owned()).unwrap()
    }

    fn enc(s: &str) -> String {
        String::from_utf8(
            encode(s.as_bytes(), &Delimiters::default())
                .unwrap()
                .into_owned(),
        )
        .unwrap()
    }

    #[test]
    fn delimiter_escapes() {
        assert_eq!(dec(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
        assert_eq!(dec(r"plain"), "plain");
        assert_eq!(enc(r"a|b^c&d~e\f"), r"a\F\b\S\c\T\d\R\e\E\f");
    }

    #[test]
    fn hex_and_formatting() {
        assert_eq!(dec(r"\X0D0A\"), "\r\n");
        assert_eq!(dec(r"\XC3A9\"), "é");
        assert_eq!(dec(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(dec(r"a\.sp 2\b"), "a\n\nb");
        assert_eq!(dec(r"a\.sp\b"), "a\nb");
        assert_eq!(dec(r"a\.sk 3\b"), "a   b");
        assert_eq!(dec(r"\H\bold\N\ text"), "bold text");
        assert_eq!(dec(r"\.in +4\x\.ti -2\"), "x");
        assert_eq!(enc("a\r\nb\nc\rd"), r"a\.br\b\.br\c\X0D\d");
    }

    #[test]
    fn unknown_and_broken_escapes_pass_through() {
        assert_eq!(dec(r"\Zcustom\"), r"\Zcustom\");
        assert_eq!(dec(r"\C2842\x\M2442\"), r"\C2842\x\M2442\");
        assert_eq!(dec(r"\XZZ\"), r"\XZZ\");
        assert_eq!(dec(r"\X0\"), r"\X0\");
        assert_eq!(dec(r"\.sp x\"), r"\.sp x\");
        assert_eq!(dec(r"a\b"), r"a\b");
        assert_eq!(dec(r"\\"), r"\\");
        assert_eq!(dec(r"\P\"), r"\P\");
    }

    #[test]
    fn non_ascii_text_around_escapes() {
        // hl7-parser 0.3 mixes char and byte offsets here.
        assert_eq!(dec("Müller\\F\\Straße\\S\\x"), "Müller|Straße^x");
    }

    #[test]
    fn truncation_character() {
        let d = Delimiters {
            truncation: Some(b'#'),
            ..Delimiters::default()
        };
        assert_eq!(&*decode(br"a\P\b", &d), b"a#b");
        assert_eq!(&*encode(b"a#b", &d).unwrap(), br"a\P\b");
        // Before v2.7 `#` is plain text.
        assert_eq!(enc("a#b"), "a#b");
    }

    #[test]
    fn no_escape_character() {
        let d = Delimiters {
            escape: None,
            ..Delimiters::default()
        };
        assert_eq!(&*decode(br"a\F\b", &d), br"a\F\b");
        assert!(encode(b"a|b", &d).is_err());
        assert_eq!(&*encode(b"a\\b", &d).unwrap(), b"a\\b");
    }
}
