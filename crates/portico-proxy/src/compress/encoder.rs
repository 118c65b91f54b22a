//! One response's compressor: gzip ([`super::gzip`]), br (brotli) or zstd, fed the body's
//! bytes as they come and asked for its output in pieces, so a body is never held whole.
//!
//! Levels are fixed, chosen for a proxy that compresses on the fly (CPU per byte matters
//! more than the last percent of ratio): gzip 6 (zlib's default, nginx's usual
//! `gzip_comp_level`), brotli quality 4 with a 512 KiB window (nginx's brotli module's
//! window; quality 4 compresses text about as well as gzip 6 at a similar cost), zstd 3
//! (its default). Memory per compressing response: about 330 KiB for gzip (a pooled state:
//! see [`super::gzip`]), 1 MiB for brotli and 1.3 MiB for zstd at these settings, held only
//! while the body streams.

use std::io::Write;

use bytes::Bytes;
use portico_config::Coding;

use super::gzip::Gzip;

/// brotli quality (0-11) and window (log2 bytes).
const BROTLI_QUALITY: u32 = 4;
const BROTLI_LGWIN: u32 = 19;
/// zstd level.
const ZSTD_LEVEL: i32 = 3;

enum Inner {
    Gzip(Gzip),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// A streaming compressor for one body.
pub(crate) struct Encoder {
    inner: Option<Inner>,
    /// Bytes written since the last flush (a flush with nothing new is skipped).
    dirty: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("done", &self.inner.is_none())
            .finish()
    }
}

impl Encoder {
    /// A compressor for `coding`.
    pub fn new(coding: Coding) -> std::io::Result<Encoder> {
        let out = || Vec::with_capacity(4096);
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(Gzip::new()),
            Coding::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                out(),
                4096,
                BROTLI_QUALITY,
                BROTLI_LGWIN,
            ))),
            Coding::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(out(), ZSTD_LEVEL)?),
        };
        Ok(Encoder {
            inner: Some(inner),
            dirty: false,
        })
    }

    /// Whether the compressed stream is complete ([`Encoder::finish`] was called).
    pub fn is_done(&self) -> bool {
        self.inner.is_none()
    }

    /// Compress `data`; what the compressor already emitted is returned (often nothing: it
    /// keeps a window of input before emitting).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(std::io::Error::other("compressor already finished"));
        };
        self.dirty = true;
        match inner {
            Inner::Gzip(g) => return g.write(data),
            Inner::Br(e) => e.write_all(data)?,
            Inner::Zstd(e) => e.write_all(data)?,
        }
        Ok(self.take())
    }

    /// Emit everything compressed so far in a form the client can decode now (a sync
    /// flush): used when the source has nothing more for the moment, so a slow stream
    /// (server-sent events, a long poll) is not held back.
    pub fn flush(&mut self) -> std::io::Result<Bytes> {
        if !self.dirty {
            return Ok(Bytes::new());
        }
        self.dirty = false;
        match self.inner.as_mut() {
            Some(Inner::Gzip(g)) => return g.flush(),
            Some(Inner::Br(e)) => e.flush()?,
            Some(Inner::Zstd(e)) => e.flush()?,
            None => return Ok(Bytes::new()),
        }
        Ok(self.take())
    }

    /// End the compressed stream: its last bytes.
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        let out = match self.inner.take() {
            Some(Inner::Gzip(mut g)) => return g.finish(),
            Some(Inner::Br(e)) => e.into_inner(),
            Some(Inner::Zstd(e)) => e.finish()?,
            None => Vec::new(),
        };
        Ok(Bytes::from(out))
    }

    /// The output buffered so far.
    fn take(&mut self) -> Bytes {
        let buf = match self.inner.as_mut() {
            Some(Inner::Gzip(_)) | None => return Bytes::new(),
            Some(Inner::Br(e)) => e.get_mut(),
            Some(Inner::Zstd(e)) => e.get_mut(),
        };
        if buf.is_empty() {
            return Bytes::new();
        }
        Bytes::from(std::mem::replace(buf, Vec::with_capacity(4096)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => {
                out = zstd::stream::decode_all(data).unwrap();
            }
        }
        out
    }

    /// Pieces written with flushes between some of them decode to the input, for each
    /// coding; a flush makes the bytes so far decodable.
    #[test]
    fn round_trips_with_flushes() {
        let text: Vec<u8> = (0..20_000)
            .map(|i| b"portico compresses text "[i % 24])
            .collect();
        for coding in Coding::ALL {
            let mut e = Encoder::new(coding).unwrap();
            let mut out = Vec::new();
            for (i, piece) in text.chunks(3000).enumerate() {
                out.extend_from_slice(&e.write(piece).unwrap());
                if i % 2 == 1 {
                    out.extend_from_slice(&e.flush().unwrap());
                }
            }
            out.extend_from_slice(&e.finish().unwrap());
            assert!(e.is_done());
            assert!(out.len() < text.len() / 10, "{coding:?}: {}", out.len());
            assert_eq!(decode(coding, &out), text, "{coding:?}");
        }
    }
}
