//! The user-space switch's port to the wire (`ferrite-ctl netback -u <ifname>`): a Linux
//! packet socket on one of Linux dom0's NICs, in promiscuous mode, so that frames for the
//! domUs' addresses reach it. A frame a domU sends to an address that is no connected domU (or
//! a broadcast) goes out through it; a frame from the wire goes to the domU its destination
//! names (a broadcast or multicast to every domU). Linux's own traffic on the NIC is left to
//! Linux: what the socket sees Linux send is skipped.

use crate::Res;
use std::ffi::{CString, c_void};

unsafe extern "C" {
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn bind(fd: i32, addr: *const c_void, len: u32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, val: *const c_void, len: u32) -> i32;
    fn recvfrom(
        fd: i32,
        buf: *mut c_void,
        len: usize,
        flags: i32,
        addr: *mut c_void,
        alen: *mut u32,
    ) -> isize;
    fn send(fd: i32, buf: *const c_void, len: usize, flags: i32) -> isize;
    fn if_nametoindex(name: *const std::ffi::c_char) -> u32;
    fn close(fd: i32) -> i32;
}

const AF_PACKET: i32 = 17;
const SOCK_RAW: i32 = 3;
/// Every protocol (ETH_P_ALL), in network order as the socket calls take it.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_MR_PROMISC: u16 = 1;
/// `sockaddr_ll.sll_pkttype` of a frame this host sent.
const PACKET_OUTGOING: u8 = 4;
const MSG_DONTWAIT: i32 = 0x40;

/// Linux's `struct sockaddr_ll`.
#[repr(C)]
#[derive(Default)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

/// Linux's `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    ifindex: i32,
    ty: u16,
    alen: u16,
    address: [u8; 8],
}

pub struct Uplink {
    fd: i32,
    pub name: String,
    /// Frames sent out and taken in, and sends the socket refused.
    pub sent: u64,
    pub received: u64,
    pub failed: u64,
}

impl Uplink {
    /// Opens a packet socket bound to `name`, in promiscuous mode.
    pub fn open(name: &str) -> Res<Self> {
        let cname = CString::new(name).map_err(|_| format!("{name}: not an interface name"))?;
        // SAFETY: a NUL-terminated string that outlives the call.
        let ifindex = unsafe { if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(format!("{name}: no such interface"));
        }
        let os = |what: &str| format!("{name}: {what}: {}", std::io::Error::last_os_error());
        // SAFETY: plain system call, no pointers.
        let fd = unsafe { socket(AF_PACKET, SOCK_RAW, ETH_P_ALL_BE as i32) };
        if fd < 0 {
            return Err(os("packet socket"));
        }
        let up = Self {
            fd,
            name: name.to_string(),
            sent: 0,
            received: 0,
            failed: 0,
        };
        let at = SockaddrLl {
            family: AF_PACKET as u16,
            protocol: ETH_P_ALL_BE,
            ifindex: ifindex as i32,
            ..SockaddrLl::default()
        };
        // SAFETY: `at` is a sockaddr_ll of the size given, alive for the call.
        if unsafe {
            bind(
                fd,
                (&at as *const SockaddrLl).cast(),
                size_of::<SockaddrLl>() as u32,
            )
        } != 0
        {
            return Err(os("bind"));
        }
        let mreq = PacketMreq {
            ifindex: ifindex as i32,
            ty: PACKET_MR_PROMISC,
            alen: 0,
            address: [0; 8],
        };
        // SAFETY: `mreq` is a packet_mreq of the size given, alive for the call.
        let r = unsafe {
            setsockopt(
                fd,
                SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                (&mreq as *const PacketMreq).cast(),
                size_of::<PacketMreq>() as u32,
            )
        };
        if r != 0 {
            return Err(os("promiscuous mode"));
        }
        Ok(up)
    }

    /// Sends `frame` out; false (and counted) if the socket refused it.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        // SAFETY: `frame` is valid for its length during the call.
        let n = unsafe { send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        if n == frame.len() as isize {
            self.sent += 1;
            true
        } else {
            self.failed += 1;
            false
        }
    }

    /// The next frame from the wire, into `buf`, without waiting; frames Linux itself sent
    /// (ours included) are skipped.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let mut from = SockaddrLl::default();
            let mut alen = size_of::<SockaddrLl>() as u32;
            // SAFETY: `buf` and `from` are valid for the lengths given during the call.
            let n = unsafe {
                recvfrom(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    MSG_DONTWAIT,
                    (&mut from as *mut SockaddrLl).cast(),
                    &mut alen,
                )
            };
            if n <= 0 {
                return None;
            }
            if from.pkttype != PACKET_OUTGOING {
                self.received += 1;
                return Some(n as usize);
            }
        }
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { close(self.fd) };
    }
}
