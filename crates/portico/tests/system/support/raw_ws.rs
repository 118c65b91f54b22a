//! A minimal WebSocket client on a raw socket (the reload and upgrade tests hold hundreds of
//! them): upgrade on `/ws`, masked text frames up to 125 bytes, unmasked frames read back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const T10: Duration = Duration::from_secs(10);

/// A minimal WebSocket client on a raw socket (text frames up to 125 bytes).
pub struct RawWs {
    s: TcpStream,
}

impl RawWs {
    pub fn open(addr: SocketAddr) -> std::io::Result<RawWs> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(T10))?;
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
        Ok(RawWs { s })
    }

    pub fn send(&mut self, text: &str) -> std::io::Result<()> {
        let mask = [7u8, 1, 9, 3];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&frame)
    }

    /// (opcode, payload) of the next frame.
    pub fn recv(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h)?;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            let mut l = [0u8; 2];
            self.s.read_exact(&mut l)?;
            len = u64::from(u16::from_be_bytes(l));
        }
        let mut payload = vec![0; len as usize];
        self.s.read_exact(&mut payload)?;
        Ok((h[0] & 0x0f, payload))
    }

    /// How long a read may wait.
    pub fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.s.set_read_timeout(Some(t))
    }

    /// Send `text` and expect it back as a text frame.
    pub fn echo(&mut self, text: &str) -> bool {
        self.send(text).is_ok() && matches!(self.recv(), Ok((1, p)) if p == text.as_bytes())
    }
}
