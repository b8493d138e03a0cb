//! Bounds-checked little-endian reading and writing. Every read names the field it reads, so a
//! truncated message reports which part was missing instead of panicking.

use crate::{Error, Result};

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Error::Truncated { field });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i8(&mut self, field: &'static str) -> Result<i8> {
        Ok(i8::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A byte string with a `u16` length prefix, refused before reading when over `max`.
    pub(crate) fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8]> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(Error::TooLong { field, len, max });
        }
        self.take(len, field)
    }

    pub(crate) fn string(&mut self, field: &'static str, max: usize) -> Result<String> {
        let bytes = self.bytes(field, max)?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Invalid {
            field,
            reason: "not UTF-8",
        })?;
        Ok(text.to_owned())
    }

    /// A count with a `u16` prefix, refused when over `max` so a hostile count cannot make
    /// the decoder allocate.
    pub(crate) fn count(&mut self, field: &'static str, max: usize) -> Result<usize> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(Error::TooLong { field, len, max });
        }
        Ok(len)
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(Error::Trailing(n)),
        }
    }
}

#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub(crate) fn i8(&mut self, v: i8) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Callers keep `bytes` within the field's limit (checked on decode); the `u16` prefix
    /// saturates so an oversized value can never be mis-framed.
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.bytes.extend_from_slice(&v[..usize::from(len)]);
    }

    pub(crate) fn count(&mut self, n: usize) {
        self.u16(u16::try_from(n).unwrap_or(u16::MAX));
    }
}
