//! Targets, blocking connections with a per-request deadline, and failure classification.
//!
//! Socket timeouts in std apply per syscall; a request that trickles one byte at a time would
//! never time out. [`Conn`] re-arms the socket timeout from one absolute deadline before every
//! read and write so a whole request is bounded by the configured timeout.
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::LoadError;
use super::kind::FailureKind;

/// Where the load goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix stream socket path.
    Unix(PathBuf),
}

impl FromStr for Target {
    type Err = LoadError;

    /// Parses `tcp:HOST:PORT` (numeric address, `[::1]:80` for IPv6) or `unix:/PATH`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LoadError::InvalidTarget(s.to_owned());
        if let Some(addr) = s.strip_prefix("tcp:") {
            addr.parse().map(Target::Tcp).map_err(|_| bad())
        } else if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            Ok(Target::Unix(PathBuf::from(path)))
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "tcp:{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A failed request, already classified.
#[derive(Debug)]
pub(crate) struct ReqError {
    pub kind: FailureKind,
    pub msg: String,
}

impl ReqError {
    pub fn new(kind: FailureKind, msg: impl Into<String>) -> Self {
        ReqError {
            kind,
            msg: msg.into(),
        }
    }

    pub fn io(e: &io::Error) -> Self {
        ReqError::new(classify(e), e.to_string())
    }

    fn eof() -> Self {
        ReqError::new(
            FailureKind::EofMidRequest,
            "peer closed the connection before the full answer",
        )
    }

    pub fn timeout() -> Self {
        ReqError::new(FailureKind::Timeout, "request deadline passed")
    }
}

impl From<ReqError> for io::Error {
    fn from(e: ReqError) -> Self {
        let kind = match e.kind {
            FailureKind::Refused => io::ErrorKind::ConnectionRefused,
            FailureKind::Reset | FailureKind::KeepAliveClosed | FailureKind::StreamReset => {
                io::ErrorKind::ConnectionReset
            }
            FailureKind::Timeout => io::ErrorKind::TimedOut,
            FailureKind::EofMidRequest
            | FailureKind::NoCloseFrame
            | FailureKind::UnansweredAtClose => io::ErrorKind::UnexpectedEof,
            FailureKind::WrongAnswer => io::ErrorKind::InvalidData,
            FailureKind::Http5xx | FailureKind::Other => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.msg)
    }
}

/// Maps an OS error to the failure kinds the report distinguishes.
pub(crate) fn classify(e: &io::Error) -> FailureKind {
    use io::ErrorKind as K;
    match e.kind() {
        // NotFound: a Unix socket path that is gone is the Unix form of "nobody listens".
        K::ConnectionRefused | K::NotFound => FailureKind::Refused,
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => FailureKind::Reset,
        K::WouldBlock | K::TimedOut => FailureKind::Timeout,
        K::UnexpectedEof => FailureKind::EofMidRequest,
        _ => match e.raw_os_error() {
            // Blocking TCP connect that hit SO_SNDTIMEO reports EINPROGRESS.
            Some(libc::EINPROGRESS | libc::ETIMEDOUT) => FailureKind::Timeout,
            _ => FailureKind::Other,
        },
    }
}

/// A connected blocking socket of either family.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects within `deadline`.
    pub fn connect(target: &Target, deadline: Instant) -> Result<Stream, ReqError> {
        connect(target, remaining(deadline)?).map_err(|e| ReqError::io(&e))
    }

    /// Bounds the next reads and writes by `deadline`.
    pub fn arm(&self, deadline: Instant) -> Result<(), ReqError> {
        let left = remaining(deadline)?;
        self.set_timeouts(left).map_err(|e| ReqError::io(&e))
    }

    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn remaining(deadline: Instant) -> Result<Duration, ReqError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(ReqError::timeout())
    } else {
        Ok(left)
    }
}

fn connect(target: &Target, timeout: Duration) -> io::Result<Stream> {
    match target {
        Target::Tcp(addr) => {
            let s = TcpStream::connect_timeout(addr, timeout)?;
            // Small request/answer lines: Nagle would only add latency noise.
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Target::Unix(path) => {
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            // A Unix connect to a full backlog blocks; SO_SNDTIMEO bounds that wait (EAGAIN).
            sock.set_write_timeout(Some(timeout))?;
            let addr = SockAddr::unix(path)?;
            loop {
                match sock.connect(&addr) {
                    Ok(()) => break,
                    // A Unix connect interrupted while waiting is still unconnected: retry.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(Stream::Unix(sock.into()))
        }
    }
}

/// A connection with a small read buffer; every operation is bounded by a caller's deadline.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    received: u64,
}

const INITIAL_BUF: usize = 4096;

impl Conn {
    pub fn connect(target: &Target, deadline: Instant) -> Result<Conn, ReqError> {
        let stream = Stream::connect(target, deadline)?;
        Ok(Conn {
            stream,
            buf: vec![0; INITIAL_BUF],
            pos: 0,
            len: 0,
            received: 0,
        })
    }

    /// Bytes read from the socket so far; lets HTTP tell "nothing came back" from a partial answer.
    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), ReqError> {
        while !data.is_empty() {
            self.arm(deadline)?;
            match self.stream.write(data) {
                Ok(0) => return Err(ReqError::new(FailureKind::Reset, "write returned 0")),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReqError::io(&e)),
            }
        }
        Ok(())
    }

    fn arm(&self, deadline: Instant) -> Result<(), ReqError> {
        self.stream.arm(deadline)
    }

    /// Reads more bytes behind the buffered ones; returns false on EOF.
    fn fill(&mut self, deadline: Instant) -> Result<bool, ReqError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            self.arm(deadline)?;
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.len += n;
                    self.received += n as u64;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReqError::io(&e)),
            }
        }
    }

    /// Returns the next line without its `\n`; a line longer than `max` is a wrong answer.
    pub fn read_line(&mut self, deadline: Instant, max: usize) -> Result<Vec<u8>, ReqError> {
        let mut scanned = 0;
        loop {
            let window = &self.buf[self.pos + scanned..self.len];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let end = self.pos + scanned + i;
                let line = self.buf[self.pos..end].to_vec();
                self.pos = end + 1;
                return Ok(line);
            }
            scanned = self.len - self.pos;
            if scanned > max {
                return Err(ReqError::new(
                    FailureKind::WrongAnswer,
                    format!("answer line longer than {max} bytes"),
                ));
            }
            if !self.fill(deadline)? {
                return Err(ReqError::eof());
            }
        }
    }

    /// Consumes exactly `n` bytes of body.
    pub fn discard(&mut self, mut n: u64, deadline: Instant) -> Result<(), ReqError> {
        loop {
            let take = n.min((self.len - self.pos) as u64);
            self.pos += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            if !self.fill(deadline)? {
                return Err(ReqError::eof());
            }
        }
    }

    /// Consumes everything up to EOF (an HTTP body delimited by connection close).
    pub fn discard_to_eof(&mut self, deadline: Instant) -> Result<(), ReqError> {
        loop {
            self.pos = self.len;
            if !self.fill(deadline)? {
                return Ok(());
            }
        }
    }
}

/// One echo round trip on `conn`: sends `line` (ending in `\n`) and checks the echo.
pub(crate) fn echo_round_trip(
    conn: &mut Conn,
    line: &str,
    deadline: Instant,
) -> Result<(), ReqError> {
    conn.write_all(line.as_bytes(), deadline)?;
    let sent = line.trim_end_matches('\n').as_bytes();
    let answer = conn.read_line(deadline, sent.len() + 64)?;
    if answer == sent {
        Ok(())
    } else {
        Err(ReqError::new(
            FailureKind::WrongAnswer,
            format!(
                "sent {:?}, got {:?}",
                String::from_utf8_lossy(sent),
                String::from_utf8_lossy(&answer)
            ),
        ))
    }
}

/// Maximum answer length accepted by [`request_once`].
const ONCE_MAX_LINE: usize = 64 * 1024;

/// One line-protocol round trip: connects, sends `line` (a `\n` is appended unless present),
/// and returns the first answer line without its newline (a trailing `\r` is kept).
///
/// Tests use it to ask a server a question such as `VERSION`. The whole exchange, connect
/// included, is bounded by `timeout`.
pub fn request_once(target: &Target, line: &str, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::connect(target, deadline)?;
    let mut msg = line.to_owned();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    conn.write_all(msg.as_bytes(), deadline)?;
    let answer = conn.read_line(deadline, ONCE_MAX_LINE)?;
    String::from_utf8(answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
