//! The owned, changeable message.
//!
//! Each segment is kept as its encoded bytes. A change splices just the bytes of the element it
//! touches, so every part a route did not touch encodes exactly as it was received — unknown
//! escapes, odd spacing and trailing delimiters included. Elements that do not exist yet are
//! created by adding the separators that lead to them; clearing an element strips the trailing
//! separators it leaves behind, so no empty delimiters are ever added at the end of a container.

use std::borrow::Cow;
use std::ops::Range;

use super::charset::Charset;
use super::delimiters::Delimiters;
use super::error::Error;
use super::escape;
use super::nav::{self, FieldSlot};
use super::parse::{decode_text, Message};
use super::path::{is_header_id, Depth, Path};

/// A message that can be changed and encoded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    delims: Delimiters,
    segments: Vec<Vec<u8>>,
}

impl OwnedMessage {
    pub(crate) fn from_parts(delims: Delimiters, segments: Vec<Vec<u8>>) -> Self {
        OwnedMessage { delims, segments }
    }

    /// Parses bytes into an owned message.
    pub fn parse(raw: &[u8]) -> Result<OwnedMessage, Error> {
        Ok(Message::parse(raw)?.to_owned_message())
    }

    /// A new message holding only `MSH|^~\&` (with these delimiters), to be filled by paths.
    pub fn new(delims: Delimiters) -> OwnedMessage {
        let mut msh = b"MSH".to_vec();
        msh.push(delims.field);
        msh.extend_from_slice(&delims.encoding_characters());
        OwnedMessage {
            delims,
            segments: vec![msh],
        }
    }

    /// The message's delimiters.
    pub fn delimiters(&self) -> Delimiters {
        self.delims
    }

    /// The character set MSH-18 names now, or the error naming an unsupported one.
    pub fn charset(&self) -> Result<Charset, Error> {
        let raw = self.get_raw(&MSH18_1).unwrap_or(b"");
        let text = escape::decode(raw, &self.delims);
        Charset::from_msh18(&String::from_utf8_lossy(&text))
    }

    fn text_charset(&self) -> Charset {
        self.charset().unwrap_or(Charset::Utf8)
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The encoded bytes of segment `index` (0-based, in message order), without terminator.
    pub fn segment_raw(&self, index: usize) -> Option<&[u8]> {
        self.segments.get(index).map(Vec::as_slice)
    }

    /// The segment ids in order.
    pub fn segment_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments
            .iter()
            .map(|s| std::str::from_utf8(&s[..3.min(s.len())]).unwrap_or("???"))
    }

    /// Index (in message order) of the `occurrence`-th segment with id `id`.
    pub fn find_segment(&self, id: &[u8], occurrence: usize) -> Option<usize> {
        self.segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.get(..3) == Some(id))
            .nth(occurrence)
            .map(|(i, _)| i)
    }

    /// The decoded text at `path`, read down to the first subcomponent (see [`Path`]).
    pub fn get(&self, path: &Path) -> Option<Cow<'_, str>> {
        let seg = &self.segments[self.find_segment(&path.segment, path.occurrence)?];
        let (field, atomic) = field_range(seg, &self.delims, path.field?).ok()?;
        let cs = self.text_charset();
        if atomic {
            return leaf_of_atomic(path).then(|| cs.decode(&seg[field]));
        }
        let steps = nav::inner_steps(path, &self.delims, true);
        let r = nav::descend(seg, field, &steps)?;
        Some(decode_text(&seg[r], &self.delims, cs))
    }

    /// The encoded bytes of exactly the element `path` names (a whole field for `PID-3`).
    pub fn get_raw(&self, path: &Path) -> Option<&[u8]> {
        let seg = &self.segments[self.find_segment(&path.segment, path.occurrence)?];
        let f = match path.field {
            Some(f) => f,
            None => return Some(seg),
        };
        let (field, atomic) = field_range(seg, &self.delims, f).ok()?;
        if atomic {
            return leaf_of_atomic(path).then(|| &seg[field]);
        }
        let steps = nav::inner_steps(path, &self.delims, false);
        nav::descend(seg, field, &steps).map(|r| &seg[r])
    }

    /// Writes `text` at `path`'s first subcomponent, escaping what needs it; creates the segment
    /// (after the last one with its id) and any missing separators on the way.
    pub fn set(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let bytes = self.text_charset().encode(text)?;
        let escaped = escape::encode(&bytes, &self.delims)?.into_owned();
        self.write(path, true, &escaped)
    }

    /// Replaces exactly the element `path` names with already-encoded bytes (which may hold
    /// this message's delimiters, e.g. `DOE^JOHN` for `PID-5`).
    pub fn set_raw(&mut self, path: &Path, encoded: &[u8]) -> Result<(), Error> {
        if encoded.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(Error::PathNotWritable {
                path: path.to_string(),
                reason: "a value cannot hold a segment terminator".into(),
            });
        }
        self.write(path, false, encoded)
    }

    /// Empties the element `path` names (a whole field for `PID-3`, one repetition for `PID-3(1)`).
    pub fn clear(&mut self, path: &Path) -> Result<(), Error> {
        if self.find_segment(&path.segment, path.occurrence).is_none() {
            return Ok(());
        }
        self.write(path, false, b"")
    }

    /// Removes what `path` names: a segment (`OBX(2)`), a repetition (`PID-3(1)`, later ones move
    /// up), or else empties the field/component (fields keep their numbers). Returns whether
    /// anything was there.
    pub fn delete(&mut self, path: &Path) -> Result<bool, Error> {
        let idx = match self.find_segment(&path.segment, path.occurrence) {
            Some(i) => i,
            None => return Ok(false),
        };
        match path.depth() {
            Depth::Segment => {
                if idx == 0 {
                    return Err(not_writable(path, "the MSH segment cannot be deleted"));
                }
                self.segments.remove(idx);
                Ok(true)
            }
            Depth::Repetition => {
                let seg = &mut self.segments[idx];
                let (field, atomic) = match field_range(seg, &self.delims, path.field.unwrap_or(1))
                {
                    Ok(x) => x,
                    Err(_) => return Ok(false),
                };
                if atomic {
                    return Err(not_writable(path, "MSH-1 and MSH-2 hold the delimiters"));
                }
                let rep = path.repetition.unwrap_or(0);
                let sep = self.delims.repetition;
                let r = match nav::piece(&seg[field.clone()], sep, rep) {
                    Ok(r) => field.start + r.start..field.start + r.end,
                    Err(_) => return Ok(false),
                };
                let was_last = r.end == field.end;
                let cut = if r.end < field.end {
                    r.start..r.end + 1
                } else if r.start > field.start {
                    r.start - 1..r.end
                } else {
                    r
                };
                seg.drain(cut);
                if was_last {
                    // Repetitions left empty at the end are trailing delimiters now.
                    if let (Ok((field, _)), Some(sep)) =
                        (field_range(seg, &self.delims, path.field.unwrap_or(1)), sep)
                    {
                        if strip_trailing(seg, field, sep) {
                            let whole = 0..seg.len();
                            strip_trailing(seg, whole, self.delims.field);
                        }
                    }
                }
                Ok(true)
            }
            _ => {
                let existed = self.get_raw(path).is_some_and(|r| !r.is_empty());
                self.clear(path)?;
                Ok(existed)
            }
        }
    }

    /// Inserts a new repetition holding `text` at the repetition index `path` names
    /// (`PID-3(0)` puts it first); later repetitions move up.
    pub fn insert_repetition(&mut self, path: &Path, text: &str) -> Result<(), Error> {
        let rep = path
            .repetition
            .ok_or_else(|| not_writable(path, "name the repetition to insert, e.g. PID-3(0)"))?;
        let sep = self
            .delims
            .repetition
            .ok_or_else(|| not_writable(path, "the message has no repetition separator"))?;
        let bytes = self.text_charset().encode(text)?;
        let escaped = escape::encode(&bytes, &self.delims)?.into_owned();
        let field_path = Path {
            repetition: None,
            component: None,
            subcomponent: None,
            ..path.clone()
        };
        let current = self
            .get_raw(&field_path)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let n = nav::count(&current, Some(sep));
        if current.is_empty() || rep >= n {
            let target = Path {
                component: None,
                subcomponent: None,
                ..path.clone()
            };
            return self.write(&target, false, &escaped);
        }
        let r = nav::piece(&current, Some(sep), rep).unwrap_or(0..0);
        let mut new = current[..r.start].to_vec();
        new.extend_from_slice(&escaped);
        new.push(sep);
        new.extend_from_slice(&current[r.start..]);
        self.write(&field_path, false, &new)
    }

    /// Inserts a segment (encoded with this message's delimiters) before position `index`.
    pub fn insert_segment(&mut self, index: usize, encoded: &[u8]) -> Result<(), Error> {
        let seg = self.check_segment(encoded)?;
        if index == 0 {
            return Err(Error::PathNotWritable {
                path: "MSH".into(),
                reason: "MSH must stay the first segment".into(),
            });
        }
        self.segments.insert(index.min(self.segments.len()), seg);
        Ok(())
    }

    /// Appends a segment (encoded with this message's delimiters) at the end.
    pub fn append_segment(&mut self, encoded: &[u8]) -> Result<(), Error> {
        let seg = self.check_segment(encoded)?;
        self.segments.push(seg);
        Ok(())
    }

    fn check_segment(&self, encoded: &[u8]) -> Result<Vec<u8>, Error> {
        let ok = encoded.len() >= 3
            && encoded[..3]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (encoded.len() == 3 || encoded[3] == self.delims.field)
            && !is_header_id(&encoded[..3])
            && !encoded.iter().any(|&b| b == b'\r' || b == b'\n');
        if ok {
            Ok(encoded.to_vec())
        } else {
            Err(Error::BadSegmentId {
                found: String::from_utf8_lossy(&encoded[..encoded.len().min(16)]).into(),
                at: Default::default(),
            })
        }
    }

    /// Re-encodes the whole message with other delimiters (e.g. the standard `|^~\&` a receiver
    /// insists on); escaped delimiters become plain text where they no longer clash.
    pub fn set_delimiters(&mut self, new: Delimiters) -> Result<(), Error> {
        Delimiters::from_header(
            &[b"MSH".as_slice(), &[new.field], &new.encoding_characters()].concat(),
            0,
        )?;
        let old = self.delims;
        let mut out = Vec::with_capacity(self.segments.len());
        for seg in &self.segments {
            out.push(translate_segment(seg, &old, &new)?);
        }
        self.segments = out;
        self.delims = new;
        Ok(())
    }

    /// The encoded message: each segment followed by CR.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.segments.iter().map(|s| s.len() + 1).sum();
        let mut out = Vec::with_capacity(len);
        for s in &self.segments {
            out.extend_from_slice(s);
            out.push(b'\r');
        }
        out
    }

    fn write(&mut self, path: &Path, leaf: bool, value: &[u8]) -> Result<(), Error> {
        let field_no = path
            .field
            .ok_or_else(|| not_writable(path, "name a field, e.g. PID-5"))?;
        if path.is_header_segment() && field_no <= 2 {
            return Err(not_writable(
                path,
                "MSH-1 and MSH-2 hold the delimiters; change them with set_delimiters",
            ));
        }
        let idx = match self.find_segment(&path.segment, path.occurrence) {
            Some(i) => i,
            None => self.create_segment(path)?,
        };
        let d = self.delims;
        let seg = &mut self.segments[idx];
        let k = match nav::field_slot(is_header_id(&path.segment), field_no) {
            FieldSlot::Piece(k) => k,
            _ => return Err(not_writable(path, "MSH-1 and MSH-2 hold the delimiters")),
        };
        let mut levels = vec![(Some(d.field), k)];
        levels.extend(nav::inner_steps(path, &d, leaf));
        let mut range = 0..seg.len();
        for &(sep, n) in &levels {
            range = ensure(seg, range, sep, n).map_err(|what| {
                not_writable(path, &format!("the message has no {what} separator"))
            })?;
        }
        seg.splice(range, value.iter().copied());
        if value.is_empty() {
            trim(seg, &levels);
        }
        Ok(())
    }

    /// Adds the segment `path` names when it is the next occurrence of its id.
    fn create_segment(&mut self, path: &Path) -> Result<usize, Error> {
        let existing = self
            .segments
            .iter()
            .filter(|s| s.get(..3) == Some(&path.segment[..]))
            .count();
        if path.occurrence != existing || is_header_id(&path.segment) {
            return Err(Error::NoSuchSegment {
                path: path.to_string(),
            });
        }
        let at = self
            .segments
            .iter()
            .rposition(|s| s.get(..3) == Some(&path.segment[..]))
            .map_or(self.segments.len(), |i| i + 1);
        self.segments.insert(at, path.segment.to_vec());
        Ok(at)
    }
}

/// MSH-18's first repetition, the message's default character set.
static MSH18_1: Path = Path {
    segment: *b"MSH",
    occurrence: 0,
    field: Some(18),
    repetition: Some(0),
    component: None,
    subcomponent: None,
};

fn not_writable(path: &Path, reason: &str) -> Error {
    Error::PathNotWritable {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// MSH-1/MSH-2 are single values: only their first repetition/component/subcomponent exists.
fn leaf_of_atomic(path: &Path) -> bool {
    path.repetition.unwrap_or(0) == 0
        && path.component.unwrap_or(1) == 1
        && path.subcomponent.unwrap_or(1) == 1
}

/// The byte range of field `n` in an encoded segment and whether it is atomic (MSH-1/MSH-2).
fn field_range(seg: &[u8], d: &Delimiters, n: usize) -> Result<(Range<usize>, bool), usize> {
    if n == 0 || seg.len() < 3 {
        return Err(0);
    }
    match nav::field_slot(is_header_id(&seg[..3]), n) {
        FieldSlot::Separator => {
            if seg.len() > 3 {
                Ok((3..4, true))
            } else {
                Err(0)
            }
        }
        FieldSlot::EncodingChars => nav::piece(seg, Some(d.field), 1).map(|r| (r, true)),
        FieldSlot::Piece(k) => nav::piece(seg, Some(d.field), k).map(|r| (r, false)),
    }
}

/// Makes piece `n` of `range` (split on `sep`) exist, adding separators at the range's end.
/// The error names the missing separator.
fn ensure(
    buf: &mut Vec<u8>,
    range: Range<usize>,
    sep: Option<u8>,
    n: usize,
) -> Result<Range<usize>, &'static str> {
    match nav::piece(&buf[range.clone()], sep, n) {
        Ok(p) => Ok(range.start + p.start..range.start + p.end),
        Err(have) => {
            let sep = sep.ok_or("repetition/subcomponent")?;
            let missing = n + 1 - have;
            buf.splice(range.end..range.end, std::iter::repeat_n(sep, missing));
            let at = range.end + missing;
            Ok(at..at)
        }
    }
}

/// After an element was emptied: strips the separators it leaves trailing in its container,
/// and in the containers above when those become empty in turn.
fn trim(seg: &mut Vec<u8>, levels: &[(Option<u8>, usize)]) {
    for depth in (1..=levels.len()).rev() {
        let container = match nav::descend(seg, 0..seg.len(), &levels[..depth - 1]) {
            Some(r) => r,
            None => return,
        };
        let (sep, idx) = levels[depth - 1];
        let sep = match sep {
            Some(s) => s,
            None => return,
        };
        let piece = match nav::piece(&seg[container.clone()], Some(sep), idx) {
            Ok(p) => container.start + p.start..container.start + p.end,
            Err(_) => return,
        };
        if !seg[piece.start..container.end].iter().all(|&b| b == sep) {
            return;
        }
        let now_empty = strip_trailing(seg, container, sep);
        if !now_empty {
            return;
        }
    }
}

/// Removes trailing `sep` bytes at the end of `range`; true when the range is then empty.
fn strip_trailing(seg: &mut Vec<u8>, range: Range<usize>, sep: u8) -> bool {
    let mut end = range.end;
    while end > range.start && seg[end - 1] == sep {
        end -= 1;
    }
    seg.drain(end..range.end);
    end == range.start
}

/// Re-encodes one segment from `old` to `new` delimiters.
fn translate_segment(seg: &[u8], old: &Delimiters, new: &Delimiters) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(seg.len() + 8);
    let header = seg.len() >= 3 && is_header_id(&seg[..3]);
    let mut fields = seg.split(|&b| b == old.field);
    out.extend_from_slice(fields.next().unwrap_or(b""));
    if header {
        out.push(new.field);
        out.extend_from_slice(&new.encoding_characters());
        fields.next();
    }
    for field in fields {
        out.push(new.field);
        let reps = split_opt(field, old.repetition);
        for (ri, rep) in reps.iter().enumerate() {
            if ri > 0 {
                out.push(need(new.repetition, "repetition")?);
            }
            for (ci, comp) in rep.split(|&b| b == old.component).enumerate() {
                if ci > 0 {
                    out.push(new.component);
                }
                for (si, sub) in split_opt(comp, old.subcomponent).iter().enumerate() {
                    if si > 0 {
                        out.push(need(new.subcomponent, "subcomponent")?);
                    }
                    translate_leaf(sub, old, new, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

fn need(sep: Option<u8>, what: &str) -> Result<u8, Error> {
    sep.ok_or_else(|| Error::BadDelimiters {
        reason: format!("the new delimiters have no {what} separator, but the message uses one"),
        at: Default::default(),
    })
}

fn split_opt(s: &[u8], sep: Option<u8>) -> Vec<&[u8]> {
    match sep {
        Some(c) => s.split(move |&b| b == c).collect(),
        None => vec![s],
    }
}

/// Rewrites one leaf: delimiter escapes become the character they stand for (escaped again if
/// it is special in the new set), other escapes keep their body with the new escape character.
fn translate_leaf(
    leaf: &[u8],
    old: &Delimiters,
    new: &Delimiters,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut i = 0;
    let mut literal = Vec::new();
    let flush = |literal: &mut Vec<u8>, out: &mut Vec<u8>| -> Result<(), Error> {
        out.extend_from_slice(&escape::encode(literal, new)?);
        literal.clear();
        Ok(())
    };
    while i < leaf.len() {
        let b = leaf[i];
        if Some(b) == old.escape {
            if let Some(j) = leaf[i + 1..].iter().position(|&c| Some(c) == old.escape) {
                let body = &leaf[i + 1..i + 1 + j];
                let ch = match body {
                    b"F" => Some(old.field),
                    b"S" => Some(old.component),
                    b"T" => old.subcomponent,
                    b"R" => old.repetition,
                    b"E" => old.escape,
                    b"P" => old.truncation,
                    _ => None,
                };
                match ch {
                    Some(c) => literal.push(c),
                    None => {
                        flush(&mut literal, out)?;
                        let esc = new.escape.ok_or(Error::Unrepresentable {
                            ch: b as char,
                            charset: "the new delimiters (no escape character)",
                        })?;
                        if body.iter().any(|&c| new.is_special(c)) {
                            return Err(Error::Unrepresentable {
                                ch: b as char,
                                charset:
                                    "the new delimiters (an escape sequence would hold a delimiter)",
                            });
                        }
                        out.push(esc);
                        out.extend_from_slice(body);
                        out.push(esc);
                    }
                }
                i += j + 2;
                continue;
            }
        }
        literal.push(b);
        i += 1;
    }
    flush(&mut literal, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    const SRC: &[u8] = b"MSH|^~\\&|SEND|FAC|||20240101||ADT^A01|C1|P|2.5\rPID|1||123^^^H^MR~456^^^S^SS||DOE^JOHN||19800101\rOBX|1|ST|x||a\rOBX|2|ST|y||b\r";

    #[test]
    fn unchanged_encodes_identically() {
        let m = OwnedMessage::parse(SRC).unwrap();
        assert_eq!(m.encode(), SRC);
    }

    #[test]
    fn set_escapes_and_extends() {
        let mut m = OwnedMessage::parse(SRC).unwrap();
        m.set(&p("PID-5-1"), "O|BRIEN^X").unwrap();
        assert_eq!(m.get_raw(&p("PID-5")).unwrap(), b"O\\F\\BRIEN\\S\\X^JOHN");
        assert_eq!(m.get(&p("PID-5")).unwrap(), "O|BRIEN^X");
        m.set(&p("PID-5-4"), "JR").unwrap();
        assert_eq!(
            m.get_raw(&p("PID-5")).unwrap(),
            b"O\\F\\BRIEN\\S\\X^JOHN^^JR"
        );
        m.set(&p("PID-11-3"), "Springfield").unwrap();
        assert_eq!(
            m.get_raw(&p("PID")).unwrap(),
            &b"PID|1||123^^^H^MR~456^^^S^SS||O\\F\\BRIEN\\S\\X^JOHN^^JR||19800101||||^^Springfield"
                [..]
        );
        m.set(&p("PID-3(2)-1"), "789").unwrap();
        assert_eq!(m.get(&p("PID-3(2)")).unwrap(), "789");
        m.set(&p("PID-3-4-2"), "1.2.3").unwrap();
        assert_eq!(m.get_raw(&p("PID-3(0)")).unwrap(), b"123^^^H&1.2.3^MR");
        // Terser semantics: a field path writes the first component and keeps the rest.
        m.set(&p("OBX(1)-5"), "c").unwrap();
        assert_eq!(m.get(&p("OBX(1)-5")).unwrap(), "c");
        assert_eq!(m.get(&p("OBX-5")).unwrap(), "a");
    }

    #[test]
    fn clear_leaves_no_trailing_delimiters() {
        let mut m = OwnedMessage::parse(SRC).unwrap();
        m.clear(&p("PID-5-2")).unwrap();
        assert_eq!(m.get_raw(&p("PID-5")).unwrap(), b"DOE");
        m.clear(&p("PID-7")).unwrap();
        assert_eq!(
            m.get_raw(&p("PID")).unwrap(),
            b"PID|1||123^^^H^MR~456^^^S^SS||DOE"
        );
        m.set(&p("PID-5-1"), "").unwrap();
        assert_eq!(
            m.get_raw(&p("PID")).unwrap(),
            b"PID|1||123^^^H^MR~456^^^S^SS"
        );
        // Clearing in the middle keeps positions.
        m.clear(&p("PID-1")).unwrap();
        assert_eq!(
            m.get_raw(&p("PID")).unwrap(),
            b"PID|||123^^^H^MR~456^^^S^SS"
        );
        // Setting past the end adds only the separators needed.
        let mut m = OwnedMessage::parse(b"MSH|^~\\&|A\rPID|1\r").unwrap();
        m.set(&p("PID-3"), "X").unwrap();
        assert_eq!(m.encode(), b"MSH|^~\\&|A\rPID|1||X\r");
    }

    #[test]
    fn segments_and_repetitions() {
        let mut m = OwnedMessage::parse(SRC).unwrap();
        assert!(m.delete(&p("OBX(0)")).unwrap());
        assert_eq!(m.get(&p("OBX-1")).unwrap(), "2");
        assert!(m.delete(&p("PID-3(0)")).unwrap());
        assert_eq!(m.get_raw(&p("PID-3")).unwrap(), b"456^^^S^SS");
        m.insert_repetition(&p("PID-3(0)"), "AAA").unwrap();
        assert_eq!(m.get_raw(&p("PID-3")).unwrap(), b"AAA~456^^^S^SS");
        m.insert_repetition(&p("PID-3(5)"), "ZZZ").unwrap();
        assert_eq!(m.get(&p("PID-3(5)")).unwrap(), "ZZZ");
        assert!(m.delete(&p("PID-3(5)")).unwrap());
        assert_eq!(m.get_raw(&p("PID-3")).unwrap(), b"AAA~456^^^S^SS");
        assert!(!m.delete(&p("PID-3(9)")).unwrap());
        // A new occurrence goes after the last segment with the same id.
        m.set(&p("OBX(1)-1"), "3").unwrap();
        assert_eq!(
            m.segment_ids().collect::<Vec<_>>(),
            ["MSH", "PID", "OBX", "OBX"]
        );
        m.set(&p("ZAB-1"), "z").unwrap();
        assert_eq!(m.segment_ids().last(), Some("ZAB"));
        assert!(matches!(
            m.set(&p("NTE(3)-1"), "x"),
            Err(Error::NoSuchSegment { .. })
        ));
        m.insert_segment(1, b"EVN|A01").unwrap();
        assert_eq!(m.get(&p("EVN-1")).unwrap(), "A01");
        assert!(m.insert_segment(1, b"bad").is_err());
        assert!(m.delete(&p("MSH")).is_err());
    }

    #[test]
    fn header_fields_are_protected() {
        let mut m = OwnedMessage::parse(SRC).unwrap();
        assert!(m.set(&p("MSH-1"), "#").is_err());
        assert!(m.set(&p("MSH-2"), "#").is_err());
        m.set(&p("MSH-3"), "NEWAPP").unwrap();
        assert_eq!(m.get(&p("MSH-3")).unwrap(), "NEWAPP");
        assert_eq!(m.get(&p("MSH-2")).unwrap(), "^~\\&");
        assert_eq!(m.get(&p("MSH-2-2")), None);
    }

    #[test]
    fn change_delimiters() {
        let mut m =
            OwnedMessage::parse(b"MSH$%~\\&$A$B\rPID$1$$X%Y&Z~W$a|b\\S\\c\\.br\\d\r").unwrap();
        m.set_delimiters(Delimiters::default()).unwrap();
        assert_eq!(
            m.encode(),
            b"MSH|^~\\&|A|B\rPID|1||X^Y&Z~W|a\\F\\b%c\\.br\\d\r".to_vec()
        );
        assert_eq!(m.get(&p("PID-4")).unwrap(), "a|b%c\nd");
    }

    #[test]
    fn charset_follows_msh18() {
        let mut m = OwnedMessage::parse(b"MSH|^~\\&|A|||||||||||||||8859/1\rPID|1\r").unwrap();
        m.set(&p("PID-5"), "Müller").unwrap();
        assert_eq!(m.get_raw(&p("PID-5")).unwrap(), b"M\xfcller");
        assert_eq!(m.get(&p("PID-5")).unwrap(), "Müller");
        assert!(m.set(&p("PID-5"), "łódź").is_err());
    }
}
