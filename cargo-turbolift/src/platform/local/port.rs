//! A replica's port: reserved by the supervisor for the whole run, and listened on by
//! each start of the replica through a socket it inherits (`TURBOLIFT_LISTEN_FD`).
//!
//! The reservation is a socket bound to the port that never listens. It keeps the port
//! from any other user for the whole run: between a replica's death and its restart, and
//! after the replica is given up, no one else can bind it and receive the program's calls
//! and their secret. Before each start the supervisor binds a new socket to the same port
//! and listens on it, hands it to the new process, and closes its own copy: the listening
//! socket lives exactly as long as the process, so while no process serves the port,
//! connections are refused at once and callers go to other replicas.
//!
//! Both sockets set `SO_REUSEPORT`, which Linux grants only to sockets of the same user:
//! that is what lets a new listening socket share the port with the reservation and with
//! the connections of the previous process still closing (`TIME_WAIT`), and what refuses
//! every other user, whatever options they set.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use turbolift_shared::protocol;

/// Connections that may wait for the replica to accept them, as tokio's own listeners.
const BACKLOG: libc::c_int = 1024;

/// A port of 127.0.0.1, reserved.
pub struct Port {
    /// Bound, never listening; held until the run ends.
    _reservation: OwnedFd,
    addr: SocketAddr,
}

/// A socket listening on a [`Port`], for one start of its replica.
pub struct Listener(OwnedFd);

impl Port {
    /// Reserves a port of 127.0.0.1 that the OS picks.
    pub fn reserve() -> io::Result<Port> {
        let reservation = socket()?;
        bind(&reservation, 0)?;
        let addr = local_addr(&reservation)?;
        Ok(Port {
            _reservation: reservation,
            addr,
        })
    }

    /// Where the replica listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new socket listening on the port.
    pub fn listen(&self) -> io::Result<Listener> {
        let socket = socket()?;
        bind(&socket, self.addr.port())?;
        // SAFETY: listen has no memory effects; the descriptor is open.
        check(unsafe { libc::listen(socket.as_raw_fd(), BACKLOG) })?;
        Ok(Listener(socket))
    }
}

impl Listener {
    /// Makes `command` inherit the socket, its number in `TURBOLIFT_LISTEN_FD`. Drop the
    /// listener once the command is spawned, so that the process alone holds it.
    pub fn hand_to(&self, command: &mut Command) {
        let fd = self.0.as_raw_fd();
        command.env(protocol::env::LISTEN_FD, fd.to_string());
        // SAFETY: only fcntl, async-signal-safe, runs between fork and exec. It clears
        // close-on-exec in the child's copy of the descriptor table; the supervisor's
        // descriptor stays close-on-exec, so no other child inherits the socket.
        unsafe {
            command.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// A TCP socket of IPv4, close-on-exec, that sockets of this user may share a port with.
fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket returns a new descriptor, or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: `on` is a c_int of the size given.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(socket)
}

fn bind(socket: &OwnedFd, port: u16) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a sockaddr_in of the size given.
    check(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })
}

fn local_addr(socket: &OwnedFd) -> io::Result<SocketAddr> {
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` and `len` are valid for writes of the size given.
    check(unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut addr).cast(), &mut len) })?;
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Port;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_reserved_port_refuses_until_listened_on_and_listens_again_after_a_close() {
        let port = Port::reserve().unwrap();
        let addr = port.addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let refused = || TcpStream::connect(addr).unwrap_err().kind();
        assert_eq!(refused(), ErrorKind::ConnectionRefused);
        for _ in 0..2 {
            // The listening socket, as the replica's process holds it.
            let listener = TcpListener::from(port.listen().unwrap().0);
            // A connection served and closed by the replica first: it leaves TIME_WAIT.
            let mut client = TcpStream::connect(addr).unwrap();
            let (mut served, _) = listener.accept().unwrap();
            served.write_all(b"x").unwrap();
            drop(served);
            let mut byte = [0u8];
            client.read_exact(&mut byte).unwrap();
            drop(client);
            drop(listener);
            assert_eq!(refused(), ErrorKind::ConnectionRefused);
        }
        // std sets SO_REUSEADDR; no option lets another socket in, though: the sockets
        // that share the port are this user's, and the test's std sockets do not set
        // SO_REUSEPORT (the e2e squatter, as another user, tries every option).
        for other in [addr.to_string(), format!("0.0.0.0:{}", addr.port())] {
            assert_eq!(
                TcpListener::bind(&other).unwrap_err().kind(),
                ErrorKind::AddrInUse,
                "nobody else binds {other}"
            );
        }
    }
}
