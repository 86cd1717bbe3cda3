//! The borrowed, zero-copy view of a message: one pass over the bytes finds every segment and
//! every field separator; repetitions, components and subcomponents are split when read.
//!
//! Input rules (HL7 v2 chapter 2, with the tolerance real interfaces need):
//! - the message starts with `MSH` (a UTF-8 byte-order mark and blank lines before it are skipped);
//! - delimiters come from MSH-1/MSH-2, never assumed;
//! - segments end with CR, LF or CRLF; empty and blank lines between segments are ignored;
//! - each segment id is three upper-case letters or digits followed by the field separator or the
//!   end of the segment; anything else is an error with its offset, because a wrong id usually
//!   means a wrong segment terminator or a truncated message;
//! - nothing after the last known field is dropped: Z-segments and unknown trailing fields stay.

use std::borrow::Cow;

use super::charset::Charset;
use super::delimiters::Delimiters;
use super::error::{Error, Location};
use super::escape;
use super::nav::{self, FieldSlot};
use super::owned::OwnedMessage;
use super::path::{is_header_id, Path};

/// A parsed message borrowing the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    charset: Result<Charset, Error>,
    segments: Vec<SegmentIndex>,
    seps: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct SegmentIndex {
    start: usize,
    end: usize,
    first_sep: usize,
    n_seps: usize,
}

/// Skips a UTF-8 byte-order mark and blank lines before the first segment.
pub(crate) fn skip_preamble(raw: &[u8]) -> usize {
    let mut pos = 0;
    if raw.starts_with(b"\xEF\xBB\xBF") {
        pos = 3;
    }
    while pos < raw.len() && matches!(raw[pos], b'\r' | b'\n' | b' ' | b'\t') {
        pos += 1;
    }
    pos
}

fn lossy_prefix(b: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(n)]).into_owned()
}

impl<'a> Message<'a> {
    /// Parses one message. See the module documentation for what is accepted.
    pub fn parse(raw: &'a [u8]) -> Result<Message<'a>, Error> {
        let pos = skip_preamble(raw);
        if pos == raw.len() {
            return Err(Error::Empty);
        }
        if !raw[pos..].starts_with(b"MSH") {
            return Err(Error::MissingHeader {
                found: lossy_prefix(&raw[pos..], 8),
            });
        }
        let (delims, _) = Delimiters::from_header(&raw[pos..], pos)?;
        let mut msg = Message {
            raw,
            delims,
            charset: Ok(Charset::Utf8),
            segments: Vec::with_capacity(16),
            seps: Vec::with_capacity(raw.len() / 6),
        };
        msg.index(pos)?;
        msg.charset = match msg.segments.first() {
            Some(_) => {
                let msh18 = msg
                    .get_raw(&MSH18)
                    .map(|r| {
                        let first = nav::piece(r, delims.repetition, 0).unwrap_or(0..r.len());
                        escape::decode(&r[first], &delims).into_owned()
                    })
                    .unwrap_or_default();
                Charset::from_msh18(&String::from_utf8_lossy(&msh18))
            }
            None => Ok(Charset::Utf8),
        };
        Ok(msg)
    }

    /// One pass over the bytes: segment boundaries and field separators.
    fn index(&mut self, from: usize) -> Result<(), Error> {
        let raw = self.raw;
        let fs = self.delims.field;
        let mut seg_start = from;
        let mut first_sep = 0;
        for p in memchr::memchr3_iter(fs, b'\r', b'\n', &raw[from..]) {
            let p = p + from;
            if raw[p] == fs {
                self.seps.push(p);
            } else {
                self.close_segment(seg_start, p, first_sep)?;
                seg_start = p + 1;
                first_sep = self.seps.len();
            }
        }
        self.close_segment(seg_start, raw.len(), first_sep)
    }

    fn close_segment(&mut self, start: usize, end: usize, first_sep: usize) -> Result<(), Error> {
        let n_seps = self.seps.len() - first_sep;
        if start >= end {
            return Ok(());
        }
        let bytes = &self.raw[start..end];
        if n_seps == 0 && bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0x1A) {
            // A blank line or a DOS end-of-file mark: not a segment.
            return Ok(());
        }
        let id_ok = bytes.len() >= 3
            && bytes[..3]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (bytes.len() == 3 || bytes[3] == self.delims.field);
        if !id_ok {
            let shown = match memchr::memchr(self.delims.field, bytes) {
                Some(i) => &bytes[..i],
                None => bytes,
            };
            return Err(Error::BadSegmentId {
                found: lossy_prefix(shown, 16),
                at: Location {
                    offset: start,
                    sequence: Some(self.segments.len() + 1),
                    ..Location::default()
                },
            });
        }
        self.segments.push(SegmentIndex {
            start,
            end,
            first_sep,
            n_seps,
        });
        Ok(())
    }

    /// The bytes this message was parsed from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The message's delimiters (from MSH-1 and MSH-2).
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// The character set named in MSH-18, or the error naming an unsupported one.
    pub fn charset(&self) -> Result<Charset, Error> {
        self.charset.clone()
    }

    /// The character set used to read text: MSH-18's, or UTF-8 when MSH-18 is unsupported.
    pub fn text_charset(&self) -> Charset {
        self.charset.clone().unwrap_or(Charset::Utf8)
    }

    /// Checks every byte against the message's character set; the error gives the offset and field.
    pub fn validate_text(&self) -> Result<(), Error> {
        let cs = self.charset()?;
        match cs.validate(self.raw) {
            Ok(()) => Ok(()),
            Err(offset) => {
                let mut at = Location::at(offset);
                if let Some(seg) = self
                    .segments()
                    .find(|s| s.offset() <= offset && offset < s.end())
                {
                    at.segment = Some(seg.id().to_string());
                    at.field = Some(seg.field_at(offset));
                }
                Err(Error::InvalidText {
                    charset: cs.name(),
                    at,
                })
            }
        }
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// All segments in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        (0..self.segments.len()).map(move |i| self.segment_at(i))
    }

    fn segment_at(&self, i: usize) -> Segment<'_> {
        let s = self.segments[i];
        let bytes = &self.raw[s.start..s.end];
        Segment {
            raw: self.raw,
            start: s.start,
            end: s.end,
            seps: &self.seps[s.first_sep..s.first_sep + s.n_seps],
            delims: self.delims,
            charset: self.text_charset(),
            header: is_header_id(&bytes[..3]),
        }
    }

    /// The `occurrence`-th (0-based) segment with this id.
    pub fn segment(&self, id: &str, occurrence: usize) -> Option<Segment<'_>> {
        let id = id.as_bytes();
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| &self.raw[s.start..s.start + 3] == id)
            .nth(occurrence)
            .map(|(i, _)| self.segment_at(i))
    }

    /// The decoded text at `path`, read down to the first subcomponent like HAPI's Terser;
    /// `None` when the message does not have that element.
    pub fn get(&self, path: &Path) -> Option<Cow<'_, str>> {
        let seg = self.segment_for(path)?;
        seg.get(path)
    }

    /// The encoded bytes of exactly the element `path` names (a whole field for `PID-3`).
    pub fn get_raw(&self, path: &Path) -> Option<&[u8]> {
        let seg = self.segment_for(path)?;
        seg.get_raw(path)
    }

    fn segment_for(&self, path: &Path) -> Option<Segment<'_>> {
        let id = std::str::from_utf8(&path.segment).ok()?;
        self.segment(id, path.occurrence)
    }

    /// MSH-`n` decoded, first component (e.g. `msh(10)` is the control id).
    pub fn msh(&self, field: usize) -> Option<Cow<'_, str>> {
        self.segment_at(0).field(field).map(|f| f.first_text())
    }

    /// MSH-9-1, the message code (`ADT`).
    pub fn message_code(&self) -> Option<Cow<'_, str>> {
        self.segment_at(0).component_text(9, 0, 1)
    }

    /// MSH-9-2, the trigger event (`A01`).
    pub fn trigger_event(&self) -> Option<Cow<'_, str>> {
        self.segment_at(0).component_text(9, 0, 2)
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> Option<Cow<'_, str>> {
        self.msh(10)
    }

    /// MSH-12-1, the version id (`2.5.1`).
    pub fn version(&self) -> Option<Cow<'_, str>> {
        self.msh(12)
    }

    /// A changeable copy of this message.
    pub fn to_owned_message(&self) -> OwnedMessage {
        OwnedMessage::from_parts(
            self.delims,
            self.segments
                .iter()
                .map(|s| self.raw[s.start..s.end].to_vec())
                .collect(),
        )
    }

    /// The message encoded again: each segment followed by CR. Byte-identical to the input
    /// apart from segment terminators (and blank lines, which are not segments).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 1);
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded message to `out` (see [`Message::encode`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for s in &self.segments {
            out.extend_from_slice(&self.raw[s.start..s.end]);
            out.push(b'\r');
        }
    }
}

static MSH18: Path = Path {
    segment: *b"MSH",
    occurrence: 0,
    field: Some(18),
    repetition: None,
    component: None,
    subcomponent: None,
};

/// One segment of a borrowed message.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'m> {
    raw: &'m [u8],
    start: usize,
    end: usize,
    seps: &'m [usize],
    delims: Delimiters,
    charset: Charset,
    header: bool,
}

impl<'m> Segment<'m> {
    /// The segment id (`PID`).
    pub fn id(&self) -> &'m str {
        // Checked at parse time to be three ASCII letters or digits.
        std::str::from_utf8(&self.raw[self.start..self.start + 3]).unwrap_or("???")
    }

    /// The segment's bytes, without its terminator.
    pub fn raw(&self) -> &'m [u8] {
        &self.raw[self.start..self.end]
    }

    /// Byte offset of the segment in the message.
    pub fn offset(&self) -> usize {
        self.start
    }

    fn end(&self) -> usize {
        self.end
    }

    /// The 1-based field number that holds byte `offset` of the message.
    fn field_at(&self, offset: usize) -> usize {
        let k = self.seps.iter().take_while(|&&p| p < offset).count();
        if self.header && k >= 1 {
            k + 1
        } else {
            k
        }
    }

    /// Number of fields present (for MSH, counting MSH-1).
    pub fn field_count(&self) -> usize {
        if self.header {
            self.seps.len() + 1
        } else {
            self.seps.len()
        }
    }

    /// Field `n` (1-based), `None` past the last field present.
    pub fn field(&self, n: usize) -> Option<Element<'m>> {
        if n == 0 {
            return None;
        }
        let (range, atomic) = match nav::field_slot(self.header, n) {
            FieldSlot::Separator => {
                let p = *self.seps.first()?;
                (p..p + 1, true)
            }
            FieldSlot::EncodingChars => (self.piece(1)?, true),
            FieldSlot::Piece(k) => (self.piece(k)?, false),
        };
        Some(Element {
            raw: &self.raw[range],
            delims: self.delims,
            charset: self.charset,
            level: Level::Field,
            atomic,
        })
    }

    /// All fields, from field 1.
    pub fn fields(&self) -> impl Iterator<Item = Element<'m>> + '_ {
        (1..=self.field_count()).filter_map(move |n| self.field(n))
    }

    fn piece(&self, k: usize) -> Option<std::ops::Range<usize>> {
        if k == 0 || k > self.seps.len() {
            return None;
        }
        let start = self.seps[k - 1] + 1;
        let end = self.seps.get(k).copied().unwrap_or(self.end);
        Some(start..end)
    }

    /// The decoded leaf text at `path` within this segment (the path's segment part is ignored).
    pub fn get(&self, path: &Path) -> Option<Cow<'m, str>> {
        let field = self.field(path.field?)?;
        let steps = nav::inner_steps(path, &self.delims, true);
        let leaf = field.descend(&steps)?;
        Some(leaf.text())
    }

    /// The encoded bytes of the element `path` names within this segment.
    pub fn get_raw(&self, path: &Path) -> Option<&'m [u8]> {
        let field = match path.field {
            Some(f) => self.field(f)?,
            None => return Some(self.raw()),
        };
        let steps = nav::inner_steps(path, &self.delims, false);
        Some(field.descend(&steps)?.raw)
    }

    fn component_text(&self, field: usize, rep: usize, comp: usize) -> Option<Cow<'m, str>> {
        let f = self.field(field)?;
        let steps = [
            (self.delims.repetition, rep),
            (Some(self.delims.component), comp - 1),
            (self.delims.subcomponent, 0),
        ];
        Some(f.descend(&steps)?.text())
    }
}

/// The level of an [`Element`] in the field → repetition → component → subcomponent tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A whole field, all its repetitions.
    Field,
    /// One repetition of a field.
    Repetition,
    /// One component.
    Component,
    /// One subcomponent.
    Subcomponent,
}

/// A field, repetition, component or subcomponent of a borrowed message.
#[derive(Debug, Clone, Copy)]
pub struct Element<'m> {
    raw: &'m [u8],
    delims: Delimiters,
    charset: Charset,
    level: Level,
    /// MSH-1 and MSH-2 hold delimiters themselves and are never split or unescaped.
    atomic: bool,
}

impl<'m> Element<'m> {
    /// The encoded bytes of the element, escapes and inner delimiters included.
    pub fn raw(&self) -> &'m [u8] {
        self.raw
    }

    /// Which level of the tree this element is.
    pub fn level(&self) -> Level {
        self.level
    }

    /// True when the element holds nothing.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// True for the explicit HL7 null `""` ("delete this value in the receiver").
    pub fn is_null(&self) -> bool {
        self.raw == b"\"\""
    }

    /// The element's text with escapes decoded (inner delimiters stay as they are).
    pub fn text(&self) -> Cow<'m, str> {
        if self.atomic {
            return self.charset.decode(self.raw);
        }
        decode_text(self.raw, &self.delims, self.charset)
    }

    /// The decoded text of the element's first subcomponent (Terser's reading of a field).
    pub fn first_text(&self) -> Cow<'m, str> {
        let mut e = *self;
        while let Some(child) = e.child(0) {
            if child.level == e.level {
                break;
            }
            e = child;
        }
        e.text()
    }

    fn next(&self) -> Option<(Option<u8>, Level)> {
        if self.atomic {
            return None;
        }
        match self.level {
            Level::Field => Some((self.delims.repetition, Level::Repetition)),
            Level::Repetition => Some((Some(self.delims.component), Level::Component)),
            Level::Component => Some((self.delims.subcomponent, Level::Subcomponent)),
            Level::Subcomponent => None,
        }
    }

    /// The parts one level down (repetitions of a field, components of a repetition, ...).
    /// An atomic element (MSH-1, MSH-2) or a subcomponent has none.
    pub fn children(&self) -> impl Iterator<Item = Element<'m>> + '_ {
        let next = self.next();
        let (sep, level) = match next {
            Some((sep, level)) => (sep, level),
            None => (None, self.level),
        };
        let raw = self.raw;
        let (delims, charset, atomic) = (self.delims, self.charset, self.atomic);
        // One iterator type for the three cases, without a boxed one per call: with no
        // separator defined the split yields the whole element once; with no level below,
        // nothing.
        let parts =
            raw.split(move |b| Some(*b) == sep)
                .take(if next.is_some() { usize::MAX } else { 0 });
        parts.map(move |raw| Element {
            raw,
            delims,
            charset,
            level,
            atomic,
        })
    }

    /// The `n`-th (0-based) part one level down, if present.
    pub fn child(&self, n: usize) -> Option<Element<'m>> {
        let (sep, level) = match self.next() {
            Some(x) => x,
            None => return if n == 0 { Some(*self) } else { None },
        };
        let r = nav::piece(self.raw, sep, n).ok()?;
        Some(Element {
            raw: &self.raw[r],
            level,
            ..*self
        })
    }

    /// The parts one level down, split once, for a reader that takes many of them (an XCN
    /// has 23 components): [`Parts::get`] does not rescan from the start as [`Element::child`]
    /// does for each.
    pub fn parts(&self) -> Parts<'m> {
        let mut parts = Parts {
            of: *self,
            level: self.level,
            bounds: [(0, 0); MAX_PARTS],
            len: 0,
            more: false,
        };
        let sep = match self.next() {
            Some((Some(sep), level)) => {
                parts.level = level;
                sep
            }
            // No level below, or no separator for it: the element is its one part, as
            // `child(0)` gives it.
            other => {
                parts.level = other.map_or(self.level, |(_, level)| level);
                parts.bounds[0] = (0, self.raw.len());
                parts.len = 1;
                return parts;
            }
        };
        let mut start = 0;
        for (pos, &b) in self.raw.iter().enumerate() {
            if b == sep {
                if parts.len == MAX_PARTS {
                    parts.more = true;
                    return parts;
                }
                parts.bounds[parts.len] = (start, pos);
                parts.len += 1;
                start = pos + 1;
            }
        }
        if parts.len == MAX_PARTS {
            parts.more = true;
        } else {
            parts.bounds[parts.len] = (start, self.raw.len());
            parts.len += 1;
        }
        parts
    }

    fn descend(self, steps: &[(Option<u8>, usize)]) -> Option<Element<'m>> {
        let mut e = self;
        for &(_, n) in steps {
            e = e.child(n)?;
        }
        Some(e)
    }
}

/// How many parts [`Parts`] keeps; a value with more reads the rest through [`Element::child`].
const MAX_PARTS: usize = 32;

/// The parts of an [`Element`] one level down, located once (see [`Element::parts`]).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'m> {
    of: Element<'m>,
    level: Level,
    bounds: [(usize, usize); MAX_PARTS],
    len: usize,
    /// More parts follow the ones kept.
    more: bool,
}

impl<'m> Parts<'m> {
    /// The `n`-th (0-based) part, as [`Element::child`] gives it.
    pub fn get(&self, n: usize) -> Option<Element<'m>> {
        if n < self.len {
            let (a, b) = self.bounds[n];
            Some(Element {
                raw: self.of.raw.get(a..b)?,
                level: self.level,
                ..self.of
            })
        } else if self.more {
            self.of.child(n)
        } else {
            None
        }
    }

    /// How many parts there are (as `children().count()`).
    pub fn count(&self) -> usize {
        if self.more {
            self.of.children().count()
        } else {
            self.len
        }
    }
}

/// Decodes escapes, then the character set: the text a value stands for.
pub fn decode_text<'m>(raw: &'m [u8], d: &Delimiters, cs: Charset) -> Cow<'m, str> {
    match escape::decode(raw, d) {
        Cow::Borrowed(b) => cs.decode(b),
        Cow::Owned(v) => Cow::Owned(cs.decode(&v).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] =
        b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\r\
EVN|A01|20240101120000\r\
PID|1||123^^^HOSP^MR~456^^^SSA^SS||DOE^JOHN^Q\\S\\R||19800101|M\r\
ZPI|custom|fields|||\r";

    fn path(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    #[test]
    fn parts_are_the_children() {
        let m = Message::parse(ADT).unwrap();
        let many = format!(
            "ZXX|{}\r",
            (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join("^")
        );
        let raw = [ADT, many.as_bytes()].concat();
        let m2 = Message::parse(&raw).unwrap();
        let mut elements = Vec::new();
        for m in [&m, &m2] {
            for seg in m.segments() {
                for f in seg.fields() {
                    elements.push(f);
                    for r in f.children() {
                        elements.push(r);
                        for c in r.children() {
                            elements.push(c);
                            elements.extend(c.children());
                        }
                    }
                }
            }
        }
        for e in elements {
            let p = e.parts();
            // With no level below, the element is its one part (as `child(0)` gives it).
            let n = e.children().count();
            assert_eq!(p.count(), if n == 0 { 1 } else { n });
            for n in 0..45 {
                assert_eq!(
                    p.get(n).map(|x| (x.raw(), x.level())),
                    e.child(n).map(|x| (x.raw(), x.level())),
                    "{:?} part {n}",
                    e.raw()
                );
            }
        }
    }

    #[test]
    fn reads_fields_components_repetitions() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.segment_count(), 4);
        assert_eq!(m.control_id().unwrap(), "CTRL1");
        assert_eq!(m.message_code().unwrap(), "ADT");
        assert_eq!(m.trigger_event().unwrap(), "A01");
        assert_eq!(m.version().unwrap(), "2.5.1");
        assert_eq!(m.get(&path("PID-5")).unwrap(), "DOE");
        assert_eq!(m.get(&path("PID-5-3")).unwrap(), "Q^R");
        assert_eq!(m.get(&path("PID-3(1)-1")).unwrap(), "456");
        assert_eq!(m.get(&path("PID.3[2].5")).unwrap(), "SS");
        assert_eq!(
            m.get_raw(&path("PID-3")).unwrap(),
            b"123^^^HOSP^MR~456^^^SSA^SS"
        );
        assert_eq!(m.get(&path("PID-3(2)")), None);
        assert_eq!(m.get(&path("PID-30")), None);
        assert_eq!(m.get(&path("PID-2")).unwrap(), "");
        assert_eq!(m.get(&path("ZPI-2")).unwrap(), "fields");
        assert_eq!(m.get(&path("MSH-1")).unwrap(), "|");
        assert_eq!(m.get(&path("MSH-2")).unwrap(), "^~\\&");
        assert_eq!(m.get(&path("MSH-3")).unwrap(), "SEND");
        assert_eq!(m.get(&path("MSH-9-3")).unwrap(), "ADT_A01");
        assert_eq!(m.encode(), ADT);
    }

    #[test]
    fn line_endings() {
        let lf = b"MSH|^~\\&|A\nPID|1\n";
        let crlf = b"MSH|^~\\&|A\r\nPID|1\r\n\r\n";
        let none = b"MSH|^~\\&|A\rPID|1";
        for raw in [&lf[..], &crlf[..], &none[..]] {
            let m = Message::parse(raw).unwrap();
            assert_eq!(m.segment_count(), 2);
            assert_eq!(m.encode(), b"MSH|^~\\&|A\rPID|1\r");
        }
    }

    #[test]
    fn custom_delimiters() {
        let m =
            Message::parse(b"MSH$%~\\&$GHH LAB$ELAB-3$$$$$ORU%R01$1\rPID$1$$A%B&C~D\r").unwrap();
        assert_eq!(m.get(&path("MSH-9-2")).unwrap(), "R01");
        assert_eq!(m.get(&path("PID-3-2-2")).unwrap(), "C");
        assert_eq!(m.get(&path("PID-3(1)")).unwrap(), "D");
    }

    #[test]
    fn null_and_empty() {
        let m = Message::parse(b"MSH|^~\\&|A\rPID|1|\"\"||x\r").unwrap();
        let pid = m.segment("PID", 0).unwrap();
        assert!(pid.field(2).unwrap().is_null());
        assert!(pid.field(3).unwrap().is_empty());
        assert!(!pid.field(3).unwrap().is_null());
        assert_eq!(pid.field_count(), 4);
    }

    #[test]
    fn errors_have_offsets() {
        assert_eq!(Message::parse(b"").unwrap_err(), Error::Empty);
        assert_eq!(Message::parse(b"\r\n  \n").unwrap_err(), Error::Empty);
        assert!(matches!(
            Message::parse(b"PID|1").unwrap_err(),
            Error::MissingHeader { .. }
        ));
        assert!(!Message::parse(b"PID|1")
            .unwrap_err()
            .to_string()
            .contains("batch"));
        let batch = Message::parse(b"BHS|^~\\&|A\rMSH|^~\\&|A\rBTS|1\r").unwrap_err();
        assert!(
            batch
                .to_string()
                .contains("an FHS/BHS batch, not a message"),
            "{batch}"
        );
        match Message::parse(b"MSH|^~\\&|A\rPID|1\rbad segment\r").unwrap_err() {
            Error::BadSegmentId { at, found } => {
                assert_eq!(at.offset, 17);
                assert_eq!(found, "bad segment");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn charset_from_msh18() {
        let m = Message::parse(b"MSH|^~\\&|A|||||||||||||||8859/1\rPID|1||||M\xfcller\r").unwrap();
        assert_eq!(m.charset().unwrap(), Charset::Latin1);
        assert_eq!(m.get(&path("PID-5")).unwrap(), "Müller");
        let m = Message::parse(b"MSH|^~\\&|A|||||||||||||||KLINGON\rPID|1\r").unwrap();
        assert!(m.charset().unwrap_err().to_string().contains("KLINGON"));
        let m = Message::parse(b"MSH|^~\\&|A\rPID|1||||M\xfcller\r").unwrap();
        let e = m.validate_text().unwrap_err();
        assert_eq!(e.location().unwrap().offset, 21);
        assert_eq!(e.location().unwrap().field, Some(5));
    }
}
