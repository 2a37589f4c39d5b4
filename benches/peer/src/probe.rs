//! "Does it serve yet?" for each protocol: a leaf the contenders and the rounds both use
//! (kept apart so that the rounds, which import the contenders, are not imported back).
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// True once a datagram sent to `addr` comes back.
pub fn udp(addr: SocketAddr) -> bool {
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let ok = s.connect(addr).is_ok()
        && s.set_read_timeout(Some(Duration::from_millis(100))).is_ok()
        && s.send(b"up?").is_ok();
    let mut buf = [0u8; 16];
    ok && matches!(s.recv(&mut buf), Ok(3) if &buf[..3] == b"up?")
}

/// True once `GET /` answers 200.
pub fn http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    let mut answer = Vec::new();
    s.write_all(req).is_ok()
        && s.read_to_end(&mut answer).is_ok()
        && answer.starts_with(b"HTTP/1.1 200")
}
