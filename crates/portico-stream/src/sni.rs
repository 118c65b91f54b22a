//! SNI peek: read the server name out of a TLS ClientHello without terminating TLS, and
//! choose the upstream of a stream's `sni_routes`.
//!
//! [`server_name`] works on the bytes received so far (the caller keeps them and forwards
//! them unchanged to the chosen server): it reassembles the handshake message from as many
//! TLS records as needed, bounded by [`PEEK_LIMIT`].

use portico_config::HostPattern;

use crate::error::SniError;

/// Most bytes read while looking for the ClientHello (16 KiB of handshake plus record
/// headers; real ClientHellos, even with post-quantum key shares, are under 2 KiB).
pub const PEEK_LIMIT: usize = 16 * 1024 + 64;

/// The outcome of a peek on a complete ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// More bytes are needed.
    Incomplete,
    /// The ClientHello's server name, lower-cased, without a trailing dot; `None` when the
    /// client sent no SNI (e.g. connecting by IP address).
    Done(Option<String>),
}

/// Most TLS records a ClientHello may be split into. A ClientHello under [`PEEK_LIMIT`]
/// fits in one or two records; the cap keeps each call of [`server_name`] bounded when a
/// client trickles one-byte records.
pub const MAX_RECORDS: usize = 64;

/// Look for the SNI in `buf` (the first bytes of a connection).
///
/// The caller calls it again after every read with all bytes so far: the record headers are
/// walked without copying (at most [`MAX_RECORDS`]) until the handshake message is complete,
/// and only then is it reassembled, so a ClientHello trickled byte by byte costs a bounded
/// walk per read instead of a copy of everything read so far.
pub fn server_name(buf: &[u8]) -> Result<Peek, SniError> {
    // The handshake message's 4-byte header, and how many handshake bytes are present.
    let mut head = [0u8; 4];
    let mut hs_len = 0usize;
    let mut records = 0usize;
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return check_partial_record(rest, buf.len());
        }
        if rest[0] != 0x16 || rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16384 + 2048 {
            return Err(SniError::Malformed("bad record length"));
        }
        records += 1;
        if records > MAX_RECORDS {
            return Err(SniError::Malformed(
                "ClientHello split into too many records",
            ));
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return limit(buf.len());
        };
        let missing = 4usize.saturating_sub(hs_len);
        for (i, &b) in fragment.iter().take(missing).enumerate() {
            head[hs_len + i] = b;
        }
        hs_len += fragment.len();
        rest = &rest[5 + len..];
        if hs_len >= 4 {
            if head[0] != 1 {
                return Err(SniError::Malformed(
                    "first handshake message is not a ClientHello",
                ));
            }
            let msg_len =
                usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
            if msg_len > PEEK_LIMIT {
                return Err(SniError::TooLong);
            }
            if hs_len >= 4 + msg_len {
                let hs = reassemble(&buf[..buf.len() - rest.len()], 4 + msg_len);
                return client_hello(&hs[4..]).map(Peek::Done);
            }
        }
    }
}

/// The first `want` handshake bytes of `records` (complete, already checked records).
fn reassemble(mut records: &[u8], want: usize) -> Vec<u8> {
    let mut hs = Vec::with_capacity(want);
    while hs.len() < want && records.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([records[3], records[4]]));
        let end = (5 + len).min(records.len());
        let take = (end - 5).min(want - hs.len());
        hs.extend_from_slice(&records[5..5 + take]);
        records = &records[end..];
    }
    hs
}

fn check_partial_record(rest: &[u8], total: usize) -> Result<Peek, SniError> {
    if rest.first().is_some_and(|&b| b != 0x16) || rest.get(1).is_some_and(|&b| b != 3) {
        return Err(SniError::NotTls);
    }
    limit(total)
}

fn limit(total: usize) -> Result<Peek, SniError> {
    if total >= PEEK_LIMIT {
        Err(SniError::TooLong)
    } else {
        Ok(Peek::Incomplete)
    }
}

/// A bounds-checked reader over the ClientHello body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, SniError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, SniError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a 1- or 2-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello(body: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut sni = Reader(data);
        let mut list = Reader(sni.vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type != 0 {
                continue;
            }
            let name = std::str::from_utf8(name)
                .map_err(|_| SniError::Malformed("server name not ASCII"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(SniError::Malformed("bad server name"));
            }
            let name = name.strip_suffix('.').unwrap_or(name);
            return Ok(Some(name.to_ascii_lowercase()));
        }
        return Ok(None);
    }
    Ok(None)
}

/// The upstream for `sni` among `routes`: an exact name first, then the longest matching
/// wildcard, then `"*"` (which also takes connections without SNI). `None`: close.
pub fn route<'r>(routes: &'r [(HostPattern, String)], sni: Option<&str>) -> Option<&'r str> {
    if let Some(name) = sni {
        if let Some((_, up)) = routes
            .iter()
            .find(|(p, _)| matches!(p, HostPattern::Exact(e) if e == name))
        {
            return Some(up);
        }
        let best = routes
            .iter()
            .filter_map(|(p, up)| match p {
                HostPattern::Suffix(s) if p.matches(name) => Some((s.len(), up)),
                _ => None,
            })
            .max_by_key(|(n, _)| *n);
        if let Some((_, up)) = best {
            return Some(up);
        }
    }
    routes
        .iter()
        .find(|(p, _)| *p == HostPattern::Any)
        .map(|(_, up)| up.as_str())
}

#[cfg(test)]
#[path = "sni_tests.rs"]
mod tests;
