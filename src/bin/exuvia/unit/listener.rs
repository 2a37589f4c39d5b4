//! Listeners as the user names them (`NAME=tcp:ADDR`, `NAME=udp:ADDR`, `NAME=unix:PATH`),
//! parsed into addresses the kernel would treat alike when they are alike: `tcp:80`,
//! `tcp:080` and `tcp:[::]:80` are one socket, `/run//a.sock` is `/run/a.sock`. Two socket
//! units on overlapping addresses cannot both start (the second bind fails with EADDRINUSE,
//! or, for datagrams, both receive an unpredictable share), so clashes are refused here.
use std::net::{IpAddr, SocketAddr};

use super::error::{SpecError, err};

/// Longest `sun_path` the kernel takes (108 bytes with the terminating NUL).
const SUN_PATH_MAX: usize = 107;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A bare port: the dual-stack wildcard (`[::]` with `BindIPv6Only=both`).
    Port(u16),
    Ip(SocketAddr),
    /// A normalized absolute path.
    Path(String),
    /// `@name`, an abstract socket (kept with its `@`, as systemd writes it).
    Abstract(String),
}

impl Address {
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Port(p) => Some(*p),
            Self::Ip(a) => Some(a.port()),
            _ => None,
        }
    }

    /// The `ListenStream=`/`ListenDatagram=` value.
    pub fn text(&self) -> String {
        match self {
            Self::Port(p) => p.to_string(),
            Self::Ip(a) => a.to_string(),
            Self::Path(p) | Self::Abstract(p) => p.clone(),
        }
    }

    /// Binds every address of a family (so FreeBind= is not needed).
    pub fn wildcard(&self) -> bool {
        match self {
            Self::Port(_) => true,
            Self::Ip(a) => a.ip().is_unspecified(),
            _ => false,
        }
    }

    /// IPv6 wildcard that also takes IPv4 (`BindIPv6Only=both`).
    pub fn dual_stack(&self) -> bool {
        match self {
            Self::Port(_) => true,
            Self::Ip(SocketAddr::V6(a)) => a.ip().is_unspecified(),
            _ => false,
        }
    }

    /// Whether a socket on `self` and one on `other` (same transport) would overlap.
    fn overlaps(&self, other: &Address) -> bool {
        match (self.inet_scope(), other.inet_scope()) {
            (Some((p1, s1)), Some((p2, s2))) => p1 == p2 && s1.overlaps(&s2),
            (None, None) => self == other,
            _ => false,
        }
    }

    fn inet_scope(&self) -> Option<(u16, Scope)> {
        let scope = match self {
            Self::Port(_) => Scope::AnyDual,
            Self::Ip(a) => match a.ip().to_canonical() {
                IpAddr::V4(v4) if v4.is_unspecified() => Scope::AnyV4,
                IpAddr::V6(v6) if v6.is_unspecified() => Scope::AnyDual,
                ip => Scope::One(ip),
            },
            _ => return None,
        };
        Some((self.port()?, scope))
    }
}

/// Which addresses of a port a socket binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `[::]` with `BindIPv6Only=both`: every IPv4 and IPv6 address.
    AnyDual,
    /// `0.0.0.0`: every IPv4 address.
    AnyV4,
    One(IpAddr),
}

impl Scope {
    fn overlaps(&self, other: &Scope) -> bool {
        match (self, other) {
            (Self::AnyDual, _) | (_, Self::AnyDual) => true,
            (Self::AnyV4, Self::AnyV4) => true,
            (Self::AnyV4, Self::One(ip)) | (Self::One(ip), Self::AnyV4) => ip.is_ipv4(),
            (Self::One(a), Self::One(b)) => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
    Unix,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Unix => "unix",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub transport: Transport,
    pub address: Address,
}

impl Listener {
    /// Parse `NAME=tcp:ADDR` as given on the command line.
    pub fn parse_flag(s: &str) -> Result<Self, SpecError> {
        match s.split_once('=') {
            Some((name, listen)) => Self::parse(name, listen),
            None => err(format!(
                "listener {s:?} does not parse: write NAME=tcp:ADDR, NAME=udp:ADDR or NAME=unix:/PATH (e.g. http=tcp:0.0.0.0:80)"
            )),
        }
    }

    pub fn parse(name: &str, listen: &str) -> Result<Self, SpecError> {
        check_listener_name(name)?;
        let bad = || {
            SpecError(format!(
                "listener {name}={listen:?} does not parse: write tcp:ADDR:PORT, tcp:PORT, udp:ADDR:PORT or unix:/absolute/path (e.g. tcp:127.0.0.1:8080, tcp:[::]:443)"
            ))
        };
        let (kind, rest) = listen.split_once(':').ok_or_else(bad)?;
        let transport = match kind {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "unix" => Transport::Unix,
            _ => return Err(bad()),
        };
        let address = match transport {
            Transport::Unix => unix_address(rest).ok_or_else(bad)?,
            Transport::Tcp | Transport::Udp => {
                let address = match rest.parse::<u16>() {
                    Ok(port) if rest.bytes().all(|b| b.is_ascii_digit()) => Address::Port(port),
                    _ => Address::Ip(rest.parse().map_err(|_| bad())?),
                };
                if let Address::Ip(SocketAddr::V6(a)) = &address {
                    if a.scope_id() != 0 {
                        return err(format!(
                            "listener {name}: scoped IPv6 addresses ({rest}) are not supported; bind the interface with a drop-in (BindToDevice=) instead"
                        ));
                    }
                }
                if address.port() == Some(0) {
                    return err(format!(
                        "listener {name}: port 0 cannot be socket-activated; pick a fixed port"
                    ));
                }
                address
            }
        };
        Ok(Self {
            name: name.to_string(),
            transport,
            address,
        })
    }

    /// A TCP/UDP port below 1024, which needs CAP_NET_BIND_SERVICE when the service binds it.
    pub fn privileged_port(&self) -> Option<u16> {
        self.address.port().filter(|p| *p < 1024)
    }

    /// `kind:address` as the user would write it, normalized.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.transport.as_str(), self.address.text())
    }
}

/// A normalized unix socket address, or None if `rest` is not one. `..` is refused (the path
/// must say where the socket is), `//` and `.` components are folded.
fn unix_address(rest: &str) -> Option<Address> {
    if let Some(abstract_name) = rest.strip_prefix('@') {
        let ok = !abstract_name.is_empty() && rest.len() <= SUN_PATH_MAX;
        return ok.then(|| Address::Abstract(rest.to_string()));
    }
    if !rest.starts_with('/') || rest.ends_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in rest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." || c.len() > 255 {
            return None;
        }
        parts.push(c);
    }
    let path = format!("/{}", parts.join("/"));
    (!parts.is_empty() && path.len() <= SUN_PATH_MAX).then_some(Address::Path(path))
}

/// Refuse two listeners with one name or on overlapping addresses, naming both.
pub fn check_distinct(listeners: &[Listener]) -> Result<(), SpecError> {
    for (i, a) in listeners.iter().enumerate() {
        for b in &listeners[..i] {
            if a.name == b.name {
                return err(format!(
                    "listener name {:?} is used twice: every listener needs its own name (it becomes FileDescriptorName=)",
                    a.name
                ));
            }
            if a.transport == b.transport && a.address.overlaps(&b.address) {
                return err(format!(
                    "listeners {} ({}) and {} ({}) clash: both would bind the same address; give each listener its own address",
                    b.name,
                    b.describe(),
                    a.name,
                    a.describe()
                ));
            }
        }
    }
    Ok(())
}

fn check_listener_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if ok {
        Ok(())
    } else {
        err(format!(
            "invalid listener name {name:?}: use 1-64 letters, digits, '_', '-' (it becomes FileDescriptorName= and part of the socket unit name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, listen: &str) -> Listener {
        Listener::parse(name, listen).unwrap_or_else(|e| panic!("{listen}: {e}"))
    }

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(l("a", "tcp:080").address.text(), "80");
        assert_eq!(l("a", "tcp:[::]:443").address.text(), "[::]:443");
        assert_eq!(
            l("a", "unix:/run//a/./b.sock").address.text(),
            "/run/a/b.sock"
        );
        assert_eq!(l("a", "unix:@x").address.text(), "@x");
        for bad in [
            "unix:/run/..",
            "unix:/run/../a",
            "unix:/run/",
            "unix:/",
            "unix:relative",
            "unix:@",
            "tcp:localhost:80",
            "tcp:0",
            "tcp:+80",
        ] {
            assert!(Listener::parse("a", bad).is_err(), "{bad}");
        }
        assert!(Listener::parse("a", "tcp:[fe80::1%2]:80").is_err());
    }

    #[test]
    fn clashes_compare_what_the_kernel_binds() {
        let clash = |a: &str, b: &str| check_distinct(&[l("a", a), l("b", b)]).is_err();
        for (a, b) in [
            ("tcp:80", "tcp:080"),
            ("tcp:80", "tcp:[::]:80"),
            ("tcp:80", "tcp:127.0.0.1:80"),
            ("tcp:0.0.0.0:80", "tcp:127.0.0.1:80"),
            ("tcp:[::]:80", "tcp:[::1]:80"),
            ("tcp:[::ffff:127.0.0.1]:80", "tcp:127.0.0.1:80"),
            ("udp:53", "udp:0.0.0.0:53"),
            ("unix:/run/a.sock", "unix:/run//a.sock"),
            ("unix:/run/./a.sock", "unix:/run/a.sock"),
            ("unix:@a", "unix:@a"),
        ] {
            assert!(clash(a, b), "{a} + {b}");
        }
        for (a, b) in [
            ("tcp:53", "udp:53"),
            ("tcp:127.0.0.1:80", "tcp:[::1]:80"),
            ("tcp:0.0.0.0:80", "tcp:[::1]:80"),
            ("tcp:127.0.0.1:80", "tcp:127.0.0.2:80"),
            ("tcp:80", "tcp:81"),
            ("unix:/run/a.sock", "unix:@/run/a.sock"),
        ] {
            assert!(!clash(a, b), "{a} + {b}");
        }
        let e = check_distinct(&[l("web", "tcp:80"), l("alt", "tcp:[::]:80")]).unwrap_err();
        assert!(
            e.0.contains("web (tcp:80)") && e.0.contains("alt (tcp:[::]:80)"),
            "{e}"
        );
    }
}
