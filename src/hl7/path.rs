//! `Path`: the address of one place in a message, parsed once from text.
//!
//! # Grammar
//!
//! ```text
//! path      = ["/" ["." ]] segment [sep field [sep component [sep subcomponent]]]
//! segment   = ID [ "(" n0 ")" | "[" n1 "]" ]        ID: 3 upper-case letters/digits, e.g. PID, ZPI
//! field     = N  [ "(" n0 ")" | "[" n1 "]" ]        the repetition of the field
//! sep       = "-" | "."
//! ```
//!
//! - `(n)` is HAPI Terser style and counts from **0**: `OBX(2)` is the third OBX, `PID-3(1)` the
//!   second repetition of PID-3.
//! - `[n]` is the dotted style of Mirth and hl7-parser users and counts from **1**: `OBX[2]` is the
//!   second OBX, `PID.3[2]` the second repetition.
//! - Field, component and subcomponent numbers count from 1, as in the standard: `PID-5-1-2`
//!   is the second subcomponent of the first component of PID-5.
//! - An omitted occurrence or repetition means the first; reading or writing a path that stops at
//!   a field or component reads or writes its **first** component/subcomponent, exactly like HAPI's
//!   Terser (`PID-5` reads the family name). `get_raw`, `set_raw` and `clear` act on the whole
//!   element the path names.
//! - `-` and `.` are interchangeable separators, so `PID-5-1`, `PID.5.1` and `PID-5.1` are the
//!   same path; brackets decide only how an index is counted.
//! - A leading `/` (Terser's root) is accepted for a segment at the top level. Terser group paths
//!   (`/PATIENT_RESULT/ORDER_OBSERVATION(0)/OBX-5`) need a message-structure definition, which
//!   Aorta does not have; they are rejected with an error that says so. Use `OBX(n)` occurrences.

use std::fmt;
use std::str::FromStr;

use super::error::Error;

/// A parsed path; see the module documentation for the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// Segment id, e.g. `*b"PID"`.
    pub segment: [u8; 3],
    /// 0-based occurrence among segments with this id.
    pub occurrence: usize,
    /// 1-based field number, if the path goes down to a field.
    pub field: Option<usize>,
    /// 0-based repetition of the field, if written.
    pub repetition: Option<usize>,
    /// 1-based component, if written.
    pub component: Option<usize>,
    /// 1-based subcomponent, if written.
    pub subcomponent: Option<usize>,
}

/// How deep a path reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Depth {
    /// The whole segment.
    Segment,
    /// A whole field, all repetitions.
    Field,
    /// One repetition of a field.
    Repetition,
    /// One component.
    Component,
    /// One subcomponent.
    Subcomponent,
}

impl Path {
    /// The path of a whole segment occurrence (0-based), e.g. `Path::whole_segment(*b"OBX", 1)`.
    pub const fn whole_segment(segment: [u8; 3], occurrence: usize) -> Path {
        Path {
            segment,
            occurrence,
            field: None,
            repetition: None,
            component: None,
            subcomponent: None,
        }
    }

    /// The path of field `field` (1-based) of the first segment with this id.
    pub const fn new(segment: [u8; 3], field: usize) -> Path {
        Path {
            field: Some(field),
            ..Path::whole_segment(segment, 0)
        }
    }

    /// This path with a 0-based segment occurrence.
    pub const fn with_occurrence(mut self, n: usize) -> Path {
        self.occurrence = n;
        self
    }

    /// This path with a 0-based field repetition.
    pub const fn with_repetition(mut self, n: usize) -> Path {
        self.repetition = Some(n);
        self
    }

    /// This path with a 1-based component.
    pub const fn with_component(mut self, n: usize) -> Path {
        self.component = Some(n);
        self
    }

    /// This path with a 1-based subcomponent.
    pub const fn with_subcomponent(mut self, n: usize) -> Path {
        self.subcomponent = Some(n);
        self
    }

    /// Parses a path; the error names the column and what was expected there.
    pub fn parse(text: &str) -> Result<Path, Error> {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
        .path()
    }

    /// The segment id as text.
    pub fn segment_id(&self) -> &str {
        // Segment ids are checked to be ASCII letters/digits when parsed.
        std::str::from_utf8(&self.segment).unwrap_or("???")
    }

    /// How deep the path reaches as written.
    pub fn depth(&self) -> Depth {
        if self.subcomponent.is_some() {
            Depth::Subcomponent
        } else if self.component.is_some() {
            Depth::Component
        } else if self.repetition.is_some() {
            Depth::Repetition
        } else if self.field.is_some() {
            Depth::Field
        } else {
            Depth::Segment
        }
    }

    /// True for segments whose field 1 is the field separator itself (MSH, FHS, BHS).
    pub fn is_header_segment(&self) -> bool {
        is_header_id(&self.segment)
    }
}

/// True for header segment ids (MSH, FHS, BHS), whose field 1 is the field separator.
pub fn is_header_id(id: &[u8]) -> bool {
    matches!(id, b"MSH" | b"FHS" | b"BHS")
}

impl FromStr for Path {
    type Err = Error;
    fn from_str(s: &str) -> Result<Path, Error> {
        Path::parse(s)
    }
}

impl fmt::Display for Path {
    /// Writes the path in Terser style (`OBX(2)-5(1)-1-2`), which parses back to the same path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.segment_id())?;
        if self.occurrence > 0 {
            write!(f, "({})", self.occurrence)?;
        }
        if let Some(field) = self.field {
            write!(f, "-{field}")?;
            if let Some(r) = self.repetition {
                write!(f, "({r})")?;
            }
            if let Some(c) = self.component {
                write!(f, "-{c}")?;
                if let Some(s) = self.subcomponent {
                    write!(f, "-{s}")?;
                }
            }
        }
        Ok(())
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::BadPath {
            path: self.text.to_string(),
            column: self.pos,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn path(mut self) -> Result<Path, Error> {
        if self.peek() == Some(b'/') {
            self.pos += 1;
            if self.peek() == Some(b'.') {
                self.pos += 1;
            }
            let rest = &self.bytes[self.pos..];
            if rest.contains(&b'/')
                || rest
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count()
                    > 3
            {
                return Err(self.err(
                    "Terser group paths need message structure definitions, which Aorta does not use; address the segment directly, e.g. OBX(1)-5",
                ));
            }
        }
        let seg_start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            self.pos += 1;
        }
        if self.pos - seg_start != 3 {
            self.pos = seg_start;
            return Err(self.err("expected a segment id of 3 upper-case letters or digits"));
        }
        let mut segment = [0u8; 3];
        segment.copy_from_slice(&self.bytes[seg_start..self.pos]);
        let occurrence = self.index()?.unwrap_or(0);
        let mut path = Path::whole_segment(segment, occurrence);
        if self.peek().is_none() {
            return Ok(path);
        }
        self.sep()?;
        path.field = Some(self.number("field")?);
        path.repetition = self.index()?;
        if self.peek().is_some() {
            self.sep()?;
            path.component = Some(self.number("component")?);
        }
        if self.peek().is_some() {
            self.sep()?;
            path.subcomponent = Some(self.number("subcomponent")?);
        }
        if self.peek().is_some() {
            return Err(self.err("unexpected text after the subcomponent"));
        }
        Ok(path)
    }

    fn sep(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'-' | b'.') => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.err("expected '-' or '.'")),
        }
    }

    fn digits(&mut self, what: &str) -> Result<usize, Error> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err(format!("expected a {what} number")));
        }
        let s = &self.text[start..self.pos];
        match s.parse::<usize>() {
            Ok(n) if n <= 100_000 => Ok(n),
            _ => {
                self.pos = start;
                Err(self.err(format!("{what} number {s} is too large")))
            }
        }
    }

    fn number(&mut self, what: &str) -> Result<usize, Error> {
        let start = self.pos;
        let n = self.digits(what)?;
        if n == 0 {
            self.pos = start;
            return Err(self.err(format!("{what} numbers start at 1")));
        }
        Ok(n)
    }

    /// An optional `(n)` (0-based) or `[n]` (1-based) index, returned 0-based.
    fn index(&mut self) -> Result<Option<usize>, Error> {
        let (close, one_based) = match self.peek() {
            Some(b'(') => (b')', false),
            Some(b'[') => (b']', true),
            _ => return Ok(None),
        };
        self.pos += 1;
        let start = self.pos;
        let n = self.digits("index")?;
        if self.peek() != Some(close) {
            return Err(self.err(format!("expected '{}'", close as char)));
        }
        self.pos += 1;
        if one_based {
            if n == 0 {
                self.pos = start;
                return Err(self.err("[n] indexes start at 1 (use (n) for 0-based indexes)"));
            }
            Ok(Some(n - 1))
        } else {
            Ok(Some(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn terser_paths() {
        let x = p("PID-5-1");
        assert_eq!(
            (x.segment_id(), x.field, x.component),
            ("PID", Some(5), Some(1))
        );
        let x = p("PID-3(1)-1");
        assert_eq!((x.repetition, x.component), (Some(1), Some(1)));
        let x = p("OBX(2)-5");
        assert_eq!(
            (x.occurrence, x.field, x.depth()),
            (2, Some(5), Depth::Field)
        );
        let x = p("PID-5-1-2");
        assert_eq!(x.subcomponent, Some(2));
        assert_eq!(p("/PID-5-1"), p("PID-5-1"));
        assert_eq!(p("/.PID-5-1"), p("PID-5-1"));
        assert_eq!(p("ZPI-1").segment_id(), "ZPI");
        assert_eq!(p("PID").depth(), Depth::Segment);
    }

    #[test]
    fn dotted_paths_are_one_based() {
        assert_eq!(p("PID.5.1"), p("PID-5-1"));
        assert_eq!(p("OBX[2].5"), p("OBX(1)-5"));
        assert_eq!(p("PID.3[2].1"), p("PID-3(1)-1"));
        assert_eq!(p("PID-5.1"), p("PID-5-1"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["PID-5-1", "OBX(2)-5(1)-1-2", "MSH-9", "PID", "ZZ1(3)"] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn malformed_paths_name_the_problem() {
        let cases = [
            ("", "segment id"),
            ("PI-5", "segment id"),
            ("pid-5", "segment id"),
            ("PID-", "field number"),
            ("PID-0", "start at 1"),
            ("PID-5-0", "start at 1"),
            ("PID-5(x)", "index number"),
            ("PID-5(1", "expected ')'"),
            ("OBX[0].5", "start at 1"),
            ("PID-5-1-2-3", "unexpected text"),
            ("PID_5", "'-' or '.'"),
            ("PID-99999999999999999999", "too large"),
            ("/PATIENT_RESULT/ORDER_OBSERVATION(0)/OBX-5", "group paths"),
        ];
        for (text, want) in cases {
            let e = Path::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
