//! The frames between the server and its script workers: a frame is a little-endian `u32`
//! length and that many bytes; inside, fields follow each other as `u32` length + bytes (or a
//! fixed-size integer). Written by hand rather than with a serde format because the two big
//! fields (the data in, the JSON out) are already JSON text and must go through as bytes,
//! copied once into the frame and never parsed on the way: a dozen lines of framing do that.

use std::io::{self, Read, Write};

/// The largest frame either side accepts (the data of one call and its answer are far
/// smaller: the engine's answers are limited long before this).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Builds one frame.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A frame with room for `n` bytes of fields.
    pub fn with_capacity(n: usize) -> Self {
        let mut buf = Vec::with_capacity(n + 4);
        buf.extend_from_slice(&[0; 4]);
        Self { buf }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(v);
        self
    }

    pub fn list<T: AsRef<[u8]>>(&mut self, items: &[T]) -> &mut Self {
        self.buf.extend_from_slice(&(items.len() as u32).to_le_bytes());
        for item in items {
            self.bytes(item.as_ref());
        }
        self
    }

    /// Replaces the first byte of the fields (a reply's outcome).
    pub fn set_first(&mut self, v: u8) {
        if let Some(b) = self.buf.get_mut(4) {
            *b = v;
        }
    }

    /// The frame's bytes, length prefix included.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        if self.buf.len() < 4 {
            self.buf.splice(0..0, [0; 4]);
        }
        let len = self.buf.len() - 4;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame of {len} bytes is too large"),
            ));
        }
        self.buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(self.buf)
    }

    /// Sends the frame in one write.
    pub fn send(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.finish()?)
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream (the other side closed).
pub fn receive(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is too large"),
        ));
    }
    let mut buf = vec![0; len];
    input.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Reads the fields of a received frame in order.
pub struct Reader<'a> {
    buf: &'a [u8],
}

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "a frame ends before its fields do")
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(short());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| short())?))
    }

    fn len(&mut self) -> io::Result<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| short())?) as usize)
    }

    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    pub fn list(&mut self) -> io::Result<Vec<&'a [u8]>> {
        let n = self.len()?;
        // Each item takes at least its 4-byte length: a count the frame cannot hold is refused
        // before anything is allocated for it.
        if n > self.buf.len() / 4 {
            return Err(short());
        }
        (0..n).map(|_| self.bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_order() {
        let mut w = Writer::with_capacity(16);
        w.u8(7).u64(u64::MAX - 1).bytes(b"data").list(&[b"a".as_slice(), b"", b"ccc"]);
        let mut wire = Vec::new();
        w.send(&mut wire).unwrap();
        let mut input = wire.as_slice();
        let frame = receive(&mut input).unwrap().unwrap();
        assert_eq!(receive(&mut input).unwrap(), None, "a clean end after the frame");
        let mut r = Reader::new(&frame);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.bytes().unwrap(), b"data");
        assert_eq!(r.list().unwrap(), vec![b"a".as_slice(), b"", b"ccc"]);
        assert!(r.u8().is_err(), "nothing left");
    }

    #[test]
    fn broken_frames_are_errors_not_allocations() {
        let mut wire = (MAX_FRAME as u32 + 1).to_le_bytes().to_vec();
        wire.extend_from_slice(b"xx");
        assert!(receive(&mut wire.as_slice()).is_err(), "oversize length");
        let cut = [10u8, 0, 0, 0, 1, 2];
        assert!(receive(&mut cut.as_slice()).is_err(), "ends inside the frame");
        let mut r = Reader::new(&[255, 255, 255, 255]);
        assert!(r.list().is_err(), "a count larger than the frame");
        let mut r = Reader::new(&[9, 0, 0, 0, 1]);
        assert!(r.bytes().is_err(), "a field longer than the frame");
    }
}
