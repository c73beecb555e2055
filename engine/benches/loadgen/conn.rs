//! One non-blocking client connection on a `mio` poll: opening and
//! upgrading it, reading whole server frames through a buffer shared by the
//! thread's connections, and writing queued bytes.
//!
//! Polls are edge-triggered, so `read_frames` reads until `WouldBlock` and
//! `flush` writes until the queue is empty or the socket is full. A
//! connection keeps only a frame split across reads (`partial`) and bytes
//! the socket did not take yet (`out`); both are reused, so the steady state
//! allocates nothing.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use mio::{Interest, Registry, Token};

use crate::ws::{self, Parsed};

/// Longest wait for a connect, an upgrade or a subscribe ack.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a close frame (with this code, 1005 when none).
    CloseFrame(u16),
    /// The TCP connection ended without a close frame.
    Eof,
    /// A frame this client does not accept (fragmented, binary, malformed).
    BadFrame,
    /// A socket error.
    Io,
}

/// A connection.
#[derive(Debug)]
pub struct Conn {
    stream: mio::net::TcpStream,
    partial: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
    mask: [u8; 4],
    /// Set once the connection is over; it is then left alone.
    pub ended: Option<Ended>,
}

/// Opens a TCP connection to `addr` (from `source`, when given) and upgrades
/// it at `path`. Returns the blocking socket and any bytes read past the
/// upgrade response.
pub fn open(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = match source {
        None => TcpStream::connect_timeout(&addr, SETUP_TIMEOUT)?,
        Some(ip) => {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            // Pick the source port at connect time, by the whole 4-tuple,
            // rather than a port free on `ip` for every destination at bind
            // time: binds stay fast with tens of thousands of connections
            // (and TIME_WAIT sockets) per source address.
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                let one: libc::c_int = 1;
                // SAFETY: a valid socket and a c_int option of the right size.
                let rc = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::IPPROTO_IP,
                        libc::IP_BIND_ADDRESS_NO_PORT,
                        (&one as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            s.bind(&SocketAddr::new(ip, 0).into())?;
            s.connect_timeout(&addr.into(), SETUP_TIMEOUT)?;
            s.into()
        }
    };
    stream.set_nodelay(true)?;
    // Bounds the blocking upgrade and subscribe; no effect once the socket
    // is non-blocking.
    stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
    stream.set_write_timeout(Some(SETUP_TIMEOUT))?;
    let pending = ws::handshake(&mut stream, &addr.to_string(), path)?;
    Ok((stream, pending))
}

impl Conn {
    /// Makes an upgraded blocking socket non-blocking and registers it for
    /// reads and writes (edge-triggered, once for its whole life).
    pub fn register(
        stream: TcpStream,
        pending: Vec<u8>,
        registry: &Registry,
        token: Token,
        mask: [u8; 4],
    ) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        let mut partial = pending;
        partial.reserve(4096);
        Ok(Conn {
            stream,
            partial,
            out: Vec::with_capacity(4096),
            out_at: 0,
            mask,
            ended: None,
        })
    }

    /// The queue to append frames to; [`flush`](Self::flush) sends them.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Reads everything the socket has, calling `on_text` with each text
    /// frame's payload. Pings are answered, pongs ignored; anything else
    /// ends the connection. `buf` is scratch space shared by the thread's
    /// connections and must be larger than any frame.
    pub fn read_frames(&mut self, buf: &mut [u8], mut on_text: impl FnMut(&[u8])) {
        if self.ended.is_some() {
            return;
        }
        loop {
            let kept = self.partial.len();
            buf[..kept].copy_from_slice(&self.partial);
            self.partial.clear();
            let n = match self.stream.read(&mut buf[kept..]) {
                Ok(0) => {
                    self.ended = Some(Ended::Eof);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.partial.extend_from_slice(&buf[..kept]);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.partial.extend_from_slice(&buf[..kept]);
                    continue;
                }
                Err(_) => {
                    self.ended = Some(Ended::Io);
                    return;
                }
            };
            let end = kept + n;
            let mut at = 0;
            while at < end {
                match ws::parse_server_frame(&buf[at..end]) {
                    Parsed::Frame {
                        opcode,
                        fin,
                        payload,
                        len,
                    } => {
                        let body = &buf[at + payload.start..at + payload.end];
                        match opcode {
                            ws::OP_TEXT if fin => on_text(body),
                            ws::OP_PING => {
                                let mask = self.mask;
                                ws::masked_frame(&mut self.out, ws::OP_PONG, body, mask);
                            }
                            ws::OP_PONG => {}
                            ws::OP_CLOSE => {
                                let code = if body.len() >= 2 {
                                    u16::from_be_bytes([body[0], body[1]])
                                } else {
                                    1005
                                };
                                self.ended = Some(Ended::CloseFrame(code));
                                return;
                            }
                            _ => {
                                self.ended = Some(Ended::BadFrame);
                                return;
                            }
                        }
                        at += len;
                    }
                    Parsed::Partial => break,
                    Parsed::Bad(_) => {
                        self.ended = Some(Ended::BadFrame);
                        return;
                    }
                }
            }
            if end - at == buf.len() {
                // One frame fills the whole scratch buffer.
                self.ended = Some(Ended::BadFrame);
                return;
            }
            self.partial.extend_from_slice(&buf[at..end]);
            if end < buf.len() {
                // A short read: the socket is most likely empty. Trying again
                // would cost a syscall that returns `WouldBlock`; the next
                // readable edge comes when more data arrives, because the
                // edge is re-armed only by new data, so read once more only
                // when the buffer was filled.
                return;
            }
        }
    }

    /// Writes queued bytes until done or the socket is full (the next
    /// writable event continues).
    pub fn flush(&mut self) {
        if self.ended.is_some() {
            return;
        }
        while self.out_at < self.out.len() {
            match self.stream.write(&self.out[self.out_at..]) {
                Ok(0) => {
                    self.ended = Some(Ended::Io);
                    return;
                }
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.ended = Some(Ended::Io);
                    return;
                }
            }
        }
        self.out.clear();
        self.out_at = 0;
    }
}
