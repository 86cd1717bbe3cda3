//! MLLP framing (HL7 v2 "Minimal Lower Layer Protocol", release 1 and 2):
//!
//! ```text
//! <SB> payload <EB><CR>        SB = 0x0B, EB = 0x1C, CR = 0x0D (start and end bytes configurable)
//! ```
//!
//! The decoder is a small state machine over the read buffer: bytes before a start byte are junk
//! (discarded and counted), a frame ends at EB CR (or at EB alone when the framing has no
//! trailer, for senders that leave the CR out), and a frame that grows past the maximum size
//! is an error carrying its first bytes, so the listener can NAK and journal it before closing —
//! memory stays bounded whatever a peer sends. Incomplete input is "need more bytes", not an error.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The framing bytes of an MLLP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Start block, 0x0B.
    pub start: u8,
    /// End block, 0x1C.
    pub end: u8,
    /// Carriage return after the end block, 0x0D; `None`: the frame ends at the end block.
    pub trailer: Option<u8>,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            start: 0x0B,
            end: 0x1C,
            trailer: Some(0x0D),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug)]
pub enum CodecError {
    /// The frame grew past the maximum size; `partial` holds its first bytes (up to the maximum).
    TooLarge {
        /// The first bytes of the frame.
        partial: Bytes,
        /// The configured maximum.
        max: usize,
    },
    /// The connection failed.
    Io(std::io::Error),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::TooLarge { max, .. } => write!(f, "MLLP frame larger than {max} bytes"),
            CodecError::Io(e) => write!(f, "connection error: {e}"),
        }
    }
}

impl std::error::Error for CodecError {}

impl From<std::io::Error> for CodecError {
    fn from(e: std::io::Error) -> Self {
        CodecError::Io(e)
    }
}

/// Frames and unframes MLLP messages.
#[derive(Debug)]
pub struct MllpCodec {
    framing: Framing,
    max_frame: usize,
    in_frame: bool,
    /// How far the current frame has been searched for its end, so each byte is scanned once.
    scanned: usize,
    junk: u64,
}

impl MllpCodec {
    /// A codec with these framing bytes and maximum payload size.
    pub fn new(framing: Framing, max_frame: usize) -> MllpCodec {
        MllpCodec {
            framing,
            max_frame: max_frame.max(1),
            in_frame: false,
            scanned: 0,
            junk: 0,
        }
    }

    /// Bytes discarded outside frames since the last call (then reset).
    pub fn take_junk(&mut self) -> u64 {
        std::mem::take(&mut self.junk)
    }

    /// True while part of a frame has been read but not its end.
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        loop {
            if !self.in_frame {
                match memchr::memchr(self.framing.start, buf) {
                    Some(i) => {
                        self.junk += i as u64;
                        buf.advance(i + 1);
                        self.in_frame = true;
                        self.scanned = 0;
                    }
                    None => {
                        self.junk += buf.len() as u64;
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            let from = self.scanned;
            let found = memchr::memchr(self.framing.end, &buf[from..]).map(|i| from + i);
            let ends = match (found, self.framing.trailer) {
                // Without a trailer the end byte closes the frame.
                (Some(i), None) => Some((i, 1)),
                (Some(i), Some(trailer)) if i + 1 < buf.len() => {
                    if buf[i + 1] == trailer {
                        Some((i, 2))
                    } else {
                        // An end byte not followed by CR is data (or a broken sender): keep
                        // looking.
                        self.scanned = i + 1;
                        continue;
                    }
                }
                (Some(i), Some(_)) => {
                    // End byte is the last byte read: wait for the CR.
                    self.scanned = i;
                    None
                }
                (None, _) => {
                    self.scanned = buf.len();
                    None
                }
            };
            if let Some((i, framing_bytes)) = ends {
                let frame = buf.split_to(i).freeze();
                buf.advance(framing_bytes);
                self.in_frame = false;
                self.scanned = 0;
                if frame.len() > self.max_frame {
                    return Err(CodecError::TooLarge {
                        partial: frame.slice(..self.max_frame),
                        max: self.max_frame,
                    });
                }
                return Ok(Some(frame));
            }
            if buf.len() > self.max_frame + 1 {
                let partial = buf.split_to(self.max_frame).freeze();
                buf.clear();
                self.in_frame = false;
                self.scanned = 0;
                return Err(CodecError::TooLarge {
                    partial,
                    max: self.max_frame,
                });
            }
            return Ok(None);
        }
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.reserve(payload.len() + 3);
        dst.extend_from_slice(&[self.framing.start]);
        dst.extend_from_slice(payload);
        dst.extend_from_slice(&[self.framing.end]);
        dst.extend(self.framing.trailer);
        Ok(())
    }
}

/// Wraps a payload in MLLP framing (for clients and tests).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let f = Framing::default();
    let mut v = Vec::with_capacity(payload.len() + 3);
    v.push(f.start);
    v.extend_from_slice(payload);
    v.push(f.end);
    v.extend(f.trailer);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut MllpCodec, chunks: &[&[u8]]) -> Vec<Result<Bytes, String>> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => out.push(Ok(f)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        break;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn split_and_coalesced_frames() {
        let mut c = MllpCodec::new(Framing::default(), 1000);
        let out = decode_all(
            &mut c,
            &[
                b"\x0bMSH|a",
                b"bc\x1c",
                b"\x0d\x0bMSH|2\x1c\x0d\x0bMSH|3\x1c\x0d",
            ],
        );
        let frames: Vec<_> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(
            frames,
            vec![
                Bytes::from("MSH|abc"),
                Bytes::from("MSH|2"),
                Bytes::from("MSH|3")
            ]
        );
        assert_eq!(c.take_junk(), 0);
    }

    #[test]
    fn junk_between_frames_is_counted() {
        let mut c = MllpCodec::new(Framing::default(), 1000);
        let out = decode_all(&mut c, &[b"\r\nnoise\x0bA\x1c\x0d\n\n\x0bB\x1c\x0d"]);
        assert_eq!(out.len(), 2);
        assert_eq!(c.take_junk(), 9);
    }

    #[test]
    fn end_byte_without_cr_is_data() {
        let mut c = MllpCodec::new(Framing::default(), 1000);
        let out = decode_all(&mut c, &[b"\x0bA\x1cB\x1c", b"\x0d"]);
        assert_eq!(out, vec![Ok(Bytes::from(&b"A\x1cB"[..]))]);
    }

    #[test]
    fn oversize_is_an_error_with_the_first_bytes() {
        let mut c = MllpCodec::new(Framing::default(), 8);
        let out = decode_all(&mut c, &[b"\x0b0123456789abcdef"]);
        assert_eq!(out, vec![Err("MLLP frame larger than 8 bytes".into())]);
        let mut c = MllpCodec::new(Framing::default(), 8);
        let mut buf = BytesMut::from(&b"\x0b0123456789\x1c\x0d"[..]);
        match c.decode(&mut buf) {
            Err(CodecError::TooLarge { partial, .. }) => assert_eq!(&partial[..], b"01234567"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn custom_framing_and_encode() {
        let f = Framing {
            start: b'<',
            end: b'>',
            trailer: Some(b'\n'),
        };
        let mut c = MllpCodec::new(f, 100);
        let mut dst = BytesMut::new();
        c.encode(&b"MSH|x"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"<MSH|x>\n");
        let out = decode_all(&mut c, &[&dst]);
        assert_eq!(out, vec![Ok(Bytes::from("MSH|x"))]);
        assert_eq!(frame(b"A"), b"\x0bA\x1c\x0d");
    }

    #[test]
    fn without_a_trailer_the_end_byte_ends_the_frame() {
        let f = Framing {
            trailer: None,
            ..Framing::default()
        };
        let mut c = MllpCodec::new(f, 100);
        // Split, coalesced, junk between, and a CR some senders still send (junk here).
        let out = decode_all(
            &mut c,
            &[b"\x0bMSH|a", b"bc\x1c", b"\x0bMSH|2\x1c\x0d\x0bMSH|3\x1c"],
        );
        assert_eq!(
            out,
            vec![
                Ok(Bytes::from("MSH|abc")),
                Ok(Bytes::from("MSH|2")),
                Ok(Bytes::from("MSH|3"))
            ]
        );
        assert_eq!(c.take_junk(), 1);
        let mut dst = BytesMut::new();
        c.encode(&b"MSA|AA"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x0bMSA|AA\x1c");
        // A frame still arriving is not cut at the maximum before its end byte shows.
        let mut c = MllpCodec::new(f, 4);
        assert_eq!(
            decode_all(&mut c, &[b"\x0bABCD", b"\x1c"]),
            vec![Ok(Bytes::from("ABCD"))]
        );
    }
}
