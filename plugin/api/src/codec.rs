//! The byte encoding of everything that crosses the boundary: a flat list of
//! fields, each `tag: u16 LE`, `len: u32 LE`, then `len` bytes. Structures
//! nest by putting an encoded list in a field. Integers are u64 LE (8 bytes),
//! strings UTF-8. Unknown tags are skipped, so a newer peer may add fields
//! without a new ABI version.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadInteger(u16),
    BadUtf8(u16),
    Missing(&'static str),
    BadValue(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated field"),
            DecodeError::BadInteger(t) => write!(f, "field {t}: not an 8-byte integer"),
            DecodeError::BadUtf8(t) => write!(f, "field {t}: not UTF-8"),
            DecodeError::Missing(what) => write!(f, "missing field: {what}"),
            DecodeError::BadValue(what) => write!(f, "invalid value: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(&mut self, tag: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&tag.to_le_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        self
    }

    pub fn str(&mut self, tag: u16, value: &str) -> &mut Self {
        self.bytes(tag, value.as_bytes())
    }

    pub fn u64(&mut self, tag: u16, value: u64) -> &mut Self {
        self.bytes(tag, &value.to_le_bytes())
    }

    pub fn opt_str(&mut self, tag: u16, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(tag, v);
        }
        self
    }

    pub fn opt_bytes(&mut self, tag: u16, value: Option<&[u8]>) -> &mut Self {
        if let Some(v) = value {
            self.bytes(tag, v);
        }
        self
    }

    pub fn opt_u64(&mut self, tag: u16, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(tag, v);
        }
        self
    }

    pub fn nested(&mut self, tag: u16, build: impl FnOnce(&mut Writer)) -> &mut Self {
        let mut inner = Writer::new();
        build(&mut inner);
        self.bytes(tag, &inner.buf)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Iterates the fields of one encoded list.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { rest: data }
    }

    pub fn next_field(&mut self) -> Result<Option<Field<'a>>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        if self.rest.len() < 6 {
            return Err(DecodeError::Truncated);
        }
        let tag = u16::from_le_bytes([self.rest[0], self.rest[1]]);
        let len =
            u32::from_le_bytes([self.rest[2], self.rest[3], self.rest[4], self.rest[5]]) as usize;
        let body = &self.rest[6..];
        if body.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (value, rest) = body.split_at(len);
        self.rest = rest;
        Ok(Some(Field { tag, value }))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub tag: u16,
    pub value: &'a [u8],
}

impl<'a> Field<'a> {
    pub fn u64(&self) -> Result<u64, DecodeError> {
        let arr: [u8; 8] = self
            .value
            .try_into()
            .map_err(|_| DecodeError::BadInteger(self.tag))?;
        Ok(u64::from_le_bytes(arr))
    }

    pub fn str(&self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.value).map_err(|_| DecodeError::BadUtf8(self.tag))
    }

    pub fn string(&self) -> Result<String, DecodeError> {
        self.str().map(str::to_string)
    }
}

/// Call `each` for every field of `data`.
pub fn for_each_field<'a>(
    data: &'a [u8],
    mut each: impl FnMut(Field<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(data);
    while let Some(f) = r.next_field()? {
        each(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_skip_unknown() {
        let mut w = Writer::new();
        w.u64(1, 42).str(2, "héllo").nested(3, |n| {
            n.u64(1, 7);
        });
        w.bytes(999, b"from a newer peer");
        let data = w.finish();
        let mut seen = Vec::new();
        for_each_field(&data, |f| {
            match f.tag {
                1 => seen.push(f.u64()?.to_string()),
                2 => seen.push(f.string()?),
                3 => for_each_field(f.value, |g| {
                    seen.push(format!("nested {}", g.u64()?));
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec!["42", "héllo", "nested 7"]);
    }

    #[test]
    fn truncation_and_type_errors_are_reported() {
        let mut w = Writer::new();
        w.str(1, "abc");
        let data = w.finish();
        assert_eq!(
            for_each_field(&data[..data.len() - 1], |_| Ok(())),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            for_each_field(&data, |f| f.u64().map(|_| ())),
            Err(DecodeError::BadInteger(1))
        );
        assert_eq!(
            for_each_field(&[1, 0, 0], |_| Ok(())),
            Err(DecodeError::Truncated)
        );
    }
}
