//! Character sets named by MSH-18 (HL7 table 0211) and the decoding of field bytes into text.
//!
//! Parsing works on bytes, because every delimiter is ASCII and ASCII bytes never occur inside a
//! UTF-8 or ISO-8859-x multi-byte sequence. Text is decoded only when a value is read. Invalid
//! bytes never panic: reading replaces them with U+FFFD, and [`Charset::validate`] reports the
//! first one with its offset so a listener can NAK instead.
//!
//! Multi-byte East Asian sets (GB 18030, BIG-5, KS X 1001) are decoded too, with one caveat
//! stated here once: their trailing bytes can equal an ASCII delimiter, which HL7 v2's ER7
//! encoding cannot tell apart, so such messages must avoid those byte values (as HL7 requires).

use std::borrow::Cow;

use encoding_rs::Encoding;

use super::error::Error;

/// A character set Aorta can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `ASCII` (and `ISO IR6`): 7-bit only.
    Ascii,
    /// `8859/1` (and `ISO IR100`): ISO-8859-1, every byte is the code point of the same value.
    Latin1,
    /// `UNICODE UTF-8`, the default when MSH-18 is empty.
    Utf8,
    /// Another single- or multi-byte set, decoded by `encoding_rs`.
    Other(&'static Encoding),
}

impl Charset {
    /// Reads MSH-18's first repetition (the message's default set); empty means UTF-8.
    ///
    /// Accepts the HL7 table 0211 names and the common spellings senders actually use
    /// (`UTF-8`, `ISO-8859-1`, `LATIN1`, `WINDOWS-1252`); anything else is an error naming it.
    pub fn from_msh18(value: &str) -> Result<Charset, Error> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(Charset::Utf8);
        }
        let norm: String = v
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_uppercase();
        let cs = match norm.as_str() {
            "ASCII" | "ISOIR6" | "USASCII" => Charset::Ascii,
            "8859/1" | "ISOIR100" | "ISO8859/1" | "ISO88591" | "LATIN1" => Charset::Latin1,
            "UNICODEUTF8" | "UTF8" | "UNICODE" => Charset::Utf8,
            "8859/2" | "ISO88592" | "ISOIR101" => Charset::Other(encoding_rs::ISO_8859_2),
            "8859/3" | "ISO88593" | "ISOIR109" => Charset::Other(encoding_rs::ISO_8859_3),
            "8859/4" | "ISO88594" | "ISOIR110" => Charset::Other(encoding_rs::ISO_8859_4),
            "8859/5" | "ISO88595" | "ISOIR144" => Charset::Other(encoding_rs::ISO_8859_5),
            "8859/6" | "ISO88596" | "ISOIR127" => Charset::Other(encoding_rs::ISO_8859_6),
            "8859/7" | "ISO88597" | "ISOIR126" => Charset::Other(encoding_rs::ISO_8859_7),
            "8859/8" | "ISO88598" | "ISOIR138" => Charset::Other(encoding_rs::ISO_8859_8),
            // encoding_rs maps ISO-8859-9 to windows-1254 (WHATWG); identical for printable text.
            "8859/9" | "ISO88599" | "ISOIR148" => Charset::Other(encoding_rs::WINDOWS_1254),
            "8859/15" | "ISO885915" | "ISOIR203" => Charset::Other(encoding_rs::ISO_8859_15),
            "WINDOWS1252" | "CP1252" => Charset::Other(encoding_rs::WINDOWS_1252),
            "GB180302000" | "GB18030" => Charset::Other(encoding_rs::GB18030),
            "KSX1001" | "ISOIR149" | "EUCKR" => Charset::Other(encoding_rs::EUC_KR),
            "BIG5" => Charset::Other(encoding_rs::BIG5),
            _ => {
                return Err(Error::UnsupportedCharset {
                    value: value.to_string(),
                })
            }
        };
        Ok(cs)
    }

    /// The name used in messages and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Other(e) => e.name(),
        }
    }

    /// Decodes bytes to text; invalid bytes become U+FFFD, never a panic.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        if let Charset::Utf8 = self {
            // One pass: valid UTF-8 (ASCII included) is borrowed as it is.
            return String::from_utf8_lossy(bytes);
        }
        if bytes.is_ascii() {
            // Every supported set is an ASCII superset, so ASCII bytes are already text.
            return match std::str::from_utf8(bytes) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(bytes),
            };
        }
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes),
            Charset::Ascii => Cow::Owned(
                bytes
                    .iter()
                    .map(|&b| if b < 0x80 { b as char } else { '\u{FFFD}' })
                    .collect(),
            ),
            Charset::Latin1 => Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
            Charset::Other(e) => e.decode_without_bom_handling(bytes).0,
        }
    }

    /// Checks that `bytes` are valid in this set; returns the offset of the first invalid byte.
    pub fn validate(&self, bytes: &[u8]) -> Result<(), usize> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes)
                .map(|_| ())
                .map_err(|e| e.valid_up_to()),
            Charset::Ascii => match bytes.iter().position(|&b| b >= 0x80) {
                Some(i) => Err(i),
                None => Ok(()),
            },
            Charset::Latin1 => Ok(()),
            Charset::Other(e) => {
                let mut decoder = e.new_decoder_without_bom_handling();
                let cap = decoder
                    .max_utf8_buffer_length_without_replacement(bytes.len())
                    .unwrap_or(bytes.len().saturating_mul(4).saturating_add(16));
                let mut out = String::with_capacity(cap);
                let (result, read) =
                    decoder.decode_to_string_without_replacement(bytes, &mut out, true);
                match result {
                    encoding_rs::DecoderResult::Malformed(bad, extra) => {
                        Err(read.saturating_sub(bad as usize + extra as usize))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Encodes text into this set, failing on a character the set cannot hold.
    pub fn encode<'a>(&self, text: &'a str) -> Result<Cow<'a, [u8]>, Error> {
        if text.is_ascii() {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        let unrepresentable = |ch: char| Error::Unrepresentable {
            ch,
            charset: self.name(),
        };
        match self {
            Charset::Utf8 => Ok(Cow::Borrowed(text.as_bytes())),
            Charset::Ascii => Err(unrepresentable(
                text.chars().find(|c| !c.is_ascii()).unwrap_or('\u{FFFD}'),
            )),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).map_err(|_| unrepresentable(c)))
                .collect::<Result<Vec<u8>, _>>()
                .map(Cow::Owned),
            Charset::Other(e) => {
                let (bytes, _, had_errors) = e.encode(text);
                if had_errors {
                    let bad = text
                        .chars()
                        .find(|c| e.encode(&c.to_string()).2)
                        .unwrap_or('\u{FFFD}');
                    Err(unrepresentable(bad))
                } else {
                    Ok(Cow::Owned(bytes.into_owned()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_table_0211() {
        assert_eq!(Charset::from_msh18("").unwrap(), Charset::Utf8);
        assert_eq!(Charset::from_msh18("ASCII").unwrap(), Charset::Ascii);
        assert_eq!(Charset::from_msh18("8859/1").unwrap(), Charset::Latin1);
        assert_eq!(Charset::from_msh18("UNICODE UTF-8").unwrap(), Charset::Utf8);
        assert_eq!(Charset::from_msh18("iso-8859-1").unwrap(), Charset::Latin1);
        assert!(matches!(
            Charset::from_msh18("8859/15").unwrap(),
            Charset::Other(_)
        ));
        let e = Charset::from_msh18("wrong").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported character set in MSH-18: \"wrong\""
        );
    }

    #[test]
    fn decode_each_set() {
        assert_eq!(Charset::Latin1.decode(b"M\xfcller"), "Müller");
        assert_eq!(Charset::Utf8.decode("Müller".as_bytes()), "Müller");
        assert_eq!(Charset::Utf8.decode(b"M\xfcller"), "M\u{FFFD}ller");
        assert_eq!(Charset::Ascii.decode(b"M\xfcller"), "M\u{FFFD}ller");
        let l2 = Charset::from_msh18("8859/2").unwrap();
        assert_eq!(l2.decode(b"\xb3\xf3d\xbc"), "łódź");
    }

    #[test]
    fn validate_and_encode() {
        assert_eq!(Charset::Utf8.validate(b"ab\xffc"), Err(2));
        assert_eq!(Charset::Ascii.validate(b"abc\x80"), Err(3));
        assert_eq!(Charset::Latin1.validate(b"\xff"), Ok(()));
        assert_eq!(&*Charset::Latin1.encode("Müller").unwrap(), b"M\xfcller");
        assert!(Charset::Latin1.encode("łódź").is_err());
        assert!(Charset::Ascii.encode("é").is_err());
        let l2 = Charset::from_msh18("8859/2").unwrap();
        assert_eq!(&*l2.encode("łódź").unwrap(), b"\xb3\xf3d\xbc");
    }
}
