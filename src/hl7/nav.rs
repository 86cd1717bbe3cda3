//! Finding the byte range of one element inside encoded text; shared by the borrowed and the
//! owned message so that both read exactly the same way.

use std::ops::Range;

use super::delimiters::Delimiters;
use super::path::{Depth, Path};

/// The range of the `n`-th (0-based) piece of `s` split on `sep`, or the number of pieces.
///
/// An empty `s` has one (empty) piece; with no separator defined, `s` is one piece.
#[inline]
pub(crate) fn piece(s: &[u8], sep: Option<u8>, n: usize) -> Result<Range<usize>, usize> {
    let sep = match sep {
        Some(c) => c,
        None => return if n == 0 { Ok(0..s.len()) } else { Err(1) },
    };
    let mut start = 0;
    let mut idx = 0;
    // Components and subcomponents are a few bytes long: a plain scan finds their separators
    // faster than memchr's setup per call (the conversion to a record calls this for nearly
    // every value it reads); whole fields and segments still go through memchr.
    if s.len() <= SHORT {
        for (pos, &b) in s.iter().enumerate() {
            if b == sep {
                if idx == n {
                    return Ok(start..pos);
                }
                idx += 1;
                start = pos + 1;
            }
        }
    } else {
        for pos in memchr::memchr_iter(sep, s) {
            if idx == n {
                return Ok(start..pos);
            }
            idx += 1;
            start = pos + 1;
        }
    }
    if idx == n {
        Ok(start..s.len())
    } else {
        Err(idx + 1)
    }
}

/// Up to this length [`piece`] scans byte by byte.
const SHORT: usize = 32;

/// The number of pieces of `s` split on `sep`.
#[inline]
pub(crate) fn count(s: &[u8], sep: Option<u8>) -> usize {
    match sep {
        Some(c) => memchr::memchr_iter(c, s).count() + 1,
        None => 1,
    }
}

/// Where field `n` of a segment lives, given how header segments count fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldSlot {
    /// MSH-1: the field separator itself, which is not between separators.
    Separator,
    /// MSH-2: the encoding characters, one piece never split further.
    EncodingChars,
    /// Piece `k` of the segment split on the field separator (piece 0 is the segment id).
    Piece(usize),
}

/// Maps a 1-based field number to where it is in a segment.
#[inline]
pub(crate) fn field_slot(header: bool, field: usize) -> FieldSlot {
    if header {
        match field {
            1 => FieldSlot::Separator,
            2 => FieldSlot::EncodingChars,
            n => FieldSlot::Piece(n - 1),
        }
    } else {
        FieldSlot::Piece(field)
    }
}

/// The separators and 0-based piece indexes below the field that `path` names.
///
/// With `leaf`, the path is followed down to a subcomponent with Terser defaults (the first
/// repetition, component and subcomponent); without, it stops where the path stops.
pub(crate) fn inner_steps(path: &Path, d: &Delimiters, leaf: bool) -> Vec<(Option<u8>, usize)> {
    let depth = if leaf {
        Depth::Subcomponent
    } else {
        path.depth()
    };
    let mut steps = Vec::with_capacity(3);
    if depth >= Depth::Repetition {
        steps.push((d.repetition, path.repetition.unwrap_or(0)));
    }
    if depth >= Depth::Component {
        steps.push((Some(d.component), path.component.map_or(0, |c| c - 1)));
    }
    if depth >= Depth::Subcomponent {
        steps.push((d.subcomponent, path.subcomponent.map_or(0, |c| c - 1)));
    }
    steps
}

/// Follows `steps` inside a field's range; `None` when an element does not exist.
pub(crate) fn descend(
    s: &[u8],
    mut range: Range<usize>,
    steps: &[(Option<u8>, usize)],
) -> Option<Range<usize>> {
    for &(sep, n) in steps {
        let r = piece(&s[range.clone()], sep, n).ok()?;
        range = range.start + r.start..range.start + r.end;
    }
    Some(range)
}
