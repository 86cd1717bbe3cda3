//! The encoding characters of a message, read from MSH-1 and MSH-2 (or FHS/BHS).
//!
//! HL7 v2 lets every message choose its own delimiters; `|^~\&` is only the recommendation.
//! MSH-2 lists, in order: component, repetition, escape, subcomponent and (v2.7+) truncation
//! characters. Fewer than four is an error (as in HAPI): reading them by position would give
//! the wrong meaning to every character after the first gap. Delimiters must be printable,
//! distinct, and neither letters nor digits — a letter in MSH-2 almost always means MSH-2 is
//! missing altogether.

use super::error::{Error, Location};

/// The delimiter set of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), `|` by convention.
    pub field: u8,
    /// Component separator, `^` by convention.
    pub component: u8,
    /// Repetition separator, `~` by convention; `None` when MSH-2 omits it.
    pub repetition: Option<u8>,
    /// Escape character, `\` by convention; `None` when MSH-2 omits it.
    pub escape: Option<u8>,
    /// Subcomponent separator, `&` by convention; `None` when MSH-2 omits it.
    pub subcomponent: Option<u8>,
    /// Truncation character (v2.7+), `#` by convention; `None` before v2.7.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: Some(b'~'),
            escape: Some(b'\\'),
            subcomponent: Some(b'&'),
            truncation: None,
        }
    }
}

impl Delimiters {
    /// Reads the delimiters from a header segment (`MSH`, `FHS` or `BHS`) starting at `segment[0]`.
    ///
    /// Returns the delimiters and the length of MSH-2 in bytes.
    pub fn from_header(segment: &[u8], base_offset: usize) -> Result<(Delimiters, usize), Error> {
        let bad = |reason: String, off: usize| Error::BadDelimiters {
            reason,
            at: Location {
                offset: base_offset + off,
                segment: Some(String::from_utf8_lossy(&segment[..3.min(segment.len())]).into()),
                sequence: Some(1),
                field: Some(if off <= 3 { 1 } else { 2 }),
            },
        };
        let field = match segment.get(3) {
            Some(&b) => b,
            None => return Err(bad("MSH-1 (field separator) is missing".into(), 3)),
        };
        check_char(field).map_err(|r| bad(format!("field separator {r}"), 3))?;
        let rest = &segment[4..];
        let len = rest
            .iter()
            .position(|&b| b == field || b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let mut chars = &rest[..len];
        // `^~\\&`: the escape character doubled by a string-escaping bug upstream (seen in feeds
        // and in test suites lifted from Java sources). Read it as `^~\&`; MSH-2's bytes stay as sent.
        let undoubled;
        if chars.len() == 5 && chars[2] == chars[3] && chars[2] == b'\\' {
            undoubled = [chars[0], chars[1], chars[2], chars[4]];
            chars = &undoubled;
        }
        if chars.len() < 4 {
            return Err(bad(
                format!(
                    "MSH-2 has {} characters; 4 are required (component, repetition, escape, subcomponent)",
                    chars.len()
                ),
                4,
            ));
        }
        if chars.len() > 5 {
            return Err(bad(
                format!(
                    "MSH-2 has {} characters; at most 5 are defined (component, repetition, escape, subcomponent, truncation)",
                    chars.len()
                ),
                4,
            ));
        }
        for (i, &c) in chars.iter().enumerate() {
            check_char(c).map_err(|r| bad(format!("encoding character {r}"), 4 + i))?;
            if c == field || chars[..i].contains(&c) {
                return Err(bad(
                    format!("delimiter {:?} is used twice", c as char),
                    4 + i,
                ));
            }
        }
        let d = Delimiters {
            field,
            component: chars[0],
            repetition: chars.get(1).copied(),
            escape: chars.get(2).copied(),
            subcomponent: chars.get(3).copied(),
            truncation: chars.get(4).copied(),
        };
        Ok((d, len))
    }

    /// The MSH-2 text for these delimiters (`^~\&`, or `^~\&#` with a truncation character).
    pub fn encoding_characters(&self) -> Vec<u8> {
        let mut v = vec![self.component];
        for c in [
            self.repetition,
            self.escape,
            self.subcomponent,
            self.truncation,
        ] {
            match c {
                Some(c) => v.push(c),
                None => break,
            }
        }
        v
    }

    /// True when `b` is any delimiter or the escape character of this set.
    #[inline]
    pub fn is_special(&self, b: u8) -> bool {
        b == self.field
            || b == self.component
            || Some(b) == self.repetition
            || Some(b) == self.escape
            || Some(b) == self.subcomponent
            || Some(b) == self.truncation
    }
}

fn check_char(c: u8) -> Result<(), String> {
    if c.is_ascii_alphanumeric() {
        Err(format!("{:?} is a letter or digit", c as char))
    } else if !c.is_ascii_graphic() {
        Err(format!("0x{c:02X} is not a printable ASCII character"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_custom() {
        let (d, n) = Delimiters::from_header(b"MSH|^~\\&|A", 0).unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(n, 4);
        let (d, _) = Delimiters::from_header(b"MSH$%~\\&$X", 0).unwrap();
        assert_eq!(d.field, b'$');
        assert_eq!(d.component, b'%');
        let (d, n) = Delimiters::from_header(b"MSH|^~\\&#|A", 0).unwrap();
        assert_eq!(d.truncation, Some(b'#'));
        assert_eq!(n, 5);
        assert_eq!(d.encoding_characters(), b"^~\\&#");
    }

    #[test]
    fn short_encoding_characters() {
        let e = Delimiters::from_header(b"MSH|~\\&|A", 0).unwrap_err();
        assert!(e.to_string().contains("MSH-2 has 3 characters"), "{e}");
    }

    #[test]
    fn rejects_bad_sets() {
        assert!(Delimiters::from_header(b"MSH|^&&^|A", 0).is_err());
        assert!(Delimiters::from_header(b"MSH", 0).is_err());
        assert!(Delimiters::from_header(b"MSH||A", 0).is_err());
        assert!(Delimiters::from_header(b"MSHA^~\\&A", 0).is_err());
        assert!(Delimiters::from_header(b"MSH|^~\\&#!|", 0).is_err());
        let (d, n) = Delimiters::from_header(b"MSH|^~\\\\&|A", 0).unwrap();
        assert_eq!((d, n), (Delimiters::default(), 5));
        let e = Delimiters::from_header(b"MSH||", 0).unwrap_err();
        assert!(e.to_string().contains("MSH-2"), "{e}");
    }
}
