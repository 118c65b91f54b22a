//! One response's compressor: gzip ([`super::gzip`]), br (brotli) or zstd
//! ([`super::zstd_frame`]), fed the body's bytes as they come and asked for its output in
//! pieces, so a body is never held whole.
//!
//! Levels are fixed, chosen for a proxy that compresses on the fly (CPU per byte matters
//! more than the last percent of ratio): gzip 6 (zlib's default, nginx's usual
//! `gzip_comp_level`), brotli quality 4 with a 512 KiB window (nginx's brotli module's
//! window; quality 4 compresses text about as well as gzip 6 at a similar cost), zstd 3
//! (its default). Memory per compressing response: about 330 KiB for gzip, 1 MiB for brotli
//! and 1.3 MiB for zstd at these settings, held only while the body streams (the gzip and
//! zstd states then wait in a small per-thread pool for the next response).

use std::io::Write;

use bytes::Bytes;
use portico_config::Coding;

use super::gzip::Gzip;
use super::zstd_frame::Zstd;

/// brotli quality (0-11) and window (log2 bytes).
const BROTLI_QUALITY: u32 = 4;
const BROTLI_LGWIN: u32 = 19;

enum Inner {
    Gzip(Gzip),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(Zstd),
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
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(Gzip::new()),
            Coding::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                Vec::with_capacity(4096),
                4096,
                BROTLI_QUALITY,
                BROTLI_LGWIN,
            ))),
            Coding::Zstd => Inner::Zstd(Zstd::new()?),
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
            Inner::Gzip(g) => g.write(data),
            Inner::Zstd(z) => z.write(data),
            Inner::Br(e) => {
                e.write_all(data)?;
                Ok(self.take())
            }
        }
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
            Some(Inner::Gzip(g)) => g.flush(),
            Some(Inner::Zstd(z)) => z.flush(),
            Some(Inner::Br(e)) => {
                e.flush()?;
                Ok(self.take())
            }
            None => Ok(Bytes::new()),
        }
    }

    /// End the compressed stream: its last bytes.
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        match self.inner.take() {
            Some(Inner::Gzip(mut g)) => g.finish(),
            Some(Inner::Zstd(mut z)) => z.finish(),
            Some(Inner::Br(e)) => Ok(Bytes::from(e.into_inner())),
            None => Ok(Bytes::new()),
        }
    }

    /// The brotli output buffered so far (gzip and zstd return theirs from each call).
    fn take(&mut self) -> Bytes {
        let Some(Inner::Br(e)) = self.inner.as_mut() else {
            return Bytes::new();
        };
        let buf = e.get_mut();
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
