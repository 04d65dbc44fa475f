//! Raw Ethernet for the VM network tests (root): a tap opened as a guest would (frames written
//! to it enter the namespace's bridge), a packet socket that captures what reaches a link, and
//! the few frames the tests send.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub type Mac = [u8; 6];

pub fn parse_mac(s: &str) -> Mac {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// Opens tap `name` inside network namespace `ns` (as QEMU does): writes to the file are frames
/// the tap receives, i.e. what the guest sends.
pub fn open_tap(ns: &str, name: &str) -> File {
    let path = format!("/run/netns/{ns}");
    let name = name.to_string();
    std::thread::spawn(move || {
        let nsf = File::open(&path).unwrap();
        // SAFETY: setns on this thread only.
        assert_eq!(
            unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        // struct ifreq: the name, then the flags (IFF_TAP | IFF_NO_PI).
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        ifr[16..18].copy_from_slice(&(0x0002u16 | 0x1000).to_ne_bytes());
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: TUNSETIFF reads and writes a 40-byte ifreq we own.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) };
        assert_eq!(
            rc,
            0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        tun
    })
    .join()
    .unwrap()
}

/// A packet socket on link `dev` of the test's namespace: every frame it sees.
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    pub fn on(dev: &str) -> Capture {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(raw >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // SAFETY: raw is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let cname = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(index > 0, "no link {dev}");
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto;
        sa.sll_ifindex = index as i32;
        // SAFETY: sa is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind to {dev}: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Capture { fd }
    }

    /// Every frame seen for `d` whose source MAC is one of `from`.
    pub fn frames_from(&self, from: &[Mac], d: Duration) -> Vec<Vec<u8>> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            // SAFETY: buf is writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 14 && from.iter().any(|m| buf[6..12] == m[..]) {
                out.push(buf[..n as usize].to_vec());
            }
        }
        out
    }
}

fn ether(src: Mac, ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f.resize(f.len().max(60), 0);
    f
}

/// An IPv4 packet (protocol 253, for experiments) carrying `marker`.
pub fn ipv4(src: Mac, from: Ipv4Addr, to: Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    let len = (20 + marker.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0, 0, 64, 253, 0, 0]);
    h.extend_from_slice(&from.octets());
    h.extend_from_slice(&to.octets());
    let sum = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let folded = !(((sum & 0xffff) + (sum >> 16)) as u16);
    h[10..12].copy_from_slice(&folded.to_be_bytes());
    h.extend_from_slice(marker);
    ether(src, 0x0800, &h)
}

/// An ARP request (or, with `ethertype` 0x8035, a RARP) from `src` claiming `spa`.
pub fn arp(src: Mac, spa: Ipv4Addr, tpa: Ipv4Addr, ethertype: u16) -> Vec<u8> {
    let mut b = vec![0, 1, 8, 0, 6, 4, 0, if ethertype == 0x8035 { 3 } else { 1 }];
    b.extend_from_slice(&src);
    b.extend_from_slice(&spa.octets());
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(&tpa.octets());
    ether(src, ethertype, &b)
}

/// An IPv6 frame (a bare header and `marker`).
pub fn ipv6(src: Mac, marker: &[u8]) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&(marker.len() as u16).to_be_bytes());
    b.extend_from_slice(&[59, 64]);
    b.extend_from_slice(&[0xfe, 0x80]);
    b.extend_from_slice(&[0; 14]);
    b.extend_from_slice(&[0xff, 0x02]);
    b.extend_from_slice(&[0; 13]);
    b.push(1);
    b.extend_from_slice(marker);
    ether(src, 0x86dd, &b)
}

/// Writes `frame` to the tap.
pub fn send(tap: &mut File, frame: &[u8]) {
    tap.write_all(frame).unwrap();
}

/// The ethertype of a captured frame.
pub fn ethertype(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}
