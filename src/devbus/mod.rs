//! The device bus as portable policy: each domain's devices, what their frontends published and
//! what their backends set, with the rules of `DEVICE_OP` (`ferrite_abi::devbus` is the guest's
//! view). The machine side keeps one [`Bus`] behind a lock and raises the `DEVBUS` virtual IRQ
//! on the other side of every change.

use crate::domain::DomId;
use crate::domain::config::disks_overlap;
use alloc::vec::Vec;
use ferrite_abi::Errno;
use ferrite_abi::devbus::{MAX_DEVICES, state};

/// One device of a domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub key: u64,
    pub gref: u32,
    pub port: u32,
    pub front: u8,
    pub back: u8,
    pub back_param: u64,
    /// What the frontend asked for (`ferrite_abi::devbus::feature` bits, as given).
    pub features: u64,
    /// The frontend's parameter (kind-specific, as given: a net frontend's MAC address).
    pub front_param: u64,
    /// What the backend honours (the same bits, as given).
    pub back_features: u64,
}

/// The first domain of `disks` (by domain id: a region of dom0's disk, offset and size in
/// bytes) other than `id` whose region overlaps `want`, with that region.
pub fn disk_overlap(
    disks: &[Option<(u64, u64)>],
    id: DomId,
    want: (u64, u64),
) -> Option<(DomId, (u64, u64))> {
    disks.iter().enumerate().find_map(|(d, r)| {
        let r = (*r)?;
        (d != id as usize && disks_overlap(want, r)).then_some((d as DomId, r))
    })
}

#[derive(Debug, Default)]
pub struct Bus {
    doms: Vec<Vec<Device>>,
}

fn check_key(key: u64) -> Result<(), Errno> {
    // kind (16 bits) non-zero, index < 2^16, nothing above.
    if key & 0xffff == 0 || key >> 32 != 0 {
        return Err(Errno::Inval);
    }
    Ok(())
}

fn check_state(s: u64) -> Result<u8, Errno> {
    if s == 0 || s > state::MAX as u64 {
        return Err(Errno::Inval);
    }
    Ok(s as u8)
}

impl Bus {
    pub const fn new() -> Self {
        Self { doms: Vec::new() }
    }

    fn devices(&self, dom: DomId) -> &[Device] {
        self.doms.get(dom as usize).map_or(&[], Vec::as_slice)
    }

    fn devices_mut(&mut self, dom: DomId) -> &mut Vec<Device> {
        let i = dom as usize;
        if self.doms.len() <= i {
            self.doms.resize_with(i + 1, Vec::new);
        }
        &mut self.doms[i]
    }

    pub fn get(&self, dom: DomId, key: u64) -> Result<Device, Errno> {
        check_key(key)?;
        self.devices(dom)
            .iter()
            .find(|d| d.key == key)
            .copied()
            .ok_or(Errno::NoEnt)
    }

    /// `PUBLISH` by `dom`'s frontend: the ring's grant reference, the port, its features and
    /// its parameter; front state INITIALISED. A device published again (a frontend reconnecting) starts a new
    /// handshake: its back state goes back to UNKNOWN.
    pub fn publish(
        &mut self,
        dom: DomId,
        key: u64,
        gref: u64,
        port: u64,
        features: u64,
        front_param: u64,
    ) -> Result<(), Errno> {
        check_key(key)?;
        let gref = u32::try_from(gref).map_err(|_| Errno::Inval)?;
        let port = u32::try_from(port).map_err(|_| Errno::Inval)?;
        let devs = self.devices_mut(dom);
        match devs.iter_mut().find(|d| d.key == key) {
            Some(d) => {
                d.gref = gref;
                d.port = port;
                d.features = features;
                d.front_param = front_param;
                d.front = state::INITIALISED;
                d.back = state::UNKNOWN;
                d.back_param = 0;
                d.back_features = 0;
            }
            None => {
                if devs.len() >= MAX_DEVICES {
                    return Err(Errno::NoSpc);
                }
                devs.push(Device {
                    key,
                    gref,
                    port,
                    front: state::INITIALISED,
                    back: state::UNKNOWN,
                    back_param: 0,
                    features,
                    back_features: 0,
                    front_param,
                });
            }
        }
        Ok(())
    }

    /// `SET_FRONT_STATE` by `dom`'s frontend.
    pub fn set_front(&mut self, dom: DomId, key: u64, s: u64) -> Result<(), Errno> {
        check_key(key)?;
        let s = check_state(s)?;
        let d = self
            .devices_mut(dom)
            .iter_mut()
            .find(|d| d.key == key)
            .ok_or(Errno::NoEnt)?;
        d.front = s;
        Ok(())
    }

    /// `SET_BACK_STATE` by the backend (dom0) for `dom`'s device: its state, parameter and the
    /// features it honours.
    pub fn set_back(
        &mut self,
        dom: DomId,
        key: u64,
        s: u64,
        param: u64,
        features: u64,
    ) -> Result<(), Errno> {
        check_key(key)?;
        let s = check_state(s)?;
        let d = self
            .devices_mut(dom)
            .iter_mut()
            .find(|d| d.key == key)
            .ok_or(Errno::NoEnt)?;
        d.back = s;
        d.back_param = param;
        d.back_features = features;
        Ok(())
    }

    /// `NEXT`: the first key of `dom` greater than `after`.
    pub fn next(&self, dom: DomId, after: u64) -> Result<u64, Errno> {
        self.devices(dom)
            .iter()
            .map(|d| d.key)
            .filter(|&k| k > after)
            .min()
            .ok_or(Errno::NoEnt)
    }

    /// `dom` is being destroyed: every device of it that is not closed yet reads as closed by
    /// its frontend, so that backends let go of its rings and pages (destruction waits for
    /// that). Returns how many changed.
    pub fn front_gone(&mut self, dom: DomId) -> usize {
        let mut n = 0;
        let Some(devs) = self.doms.get_mut(dom as usize) else {
            return 0;
        };
        for d in devs.iter_mut() {
            if d.front != state::CLOSED {
                d.front = state::CLOSED;
                n += 1;
            }
        }
        n
    }

    /// Forgets `dom`'s devices (a destroyed domain).
    pub fn remove_domain(&mut self, dom: DomId) {
        if let Some(v) = self.doms.get_mut(dom as usize) {
            v.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_abi::devbus::{key, kind};

    #[test]
    fn disk_regions_must_not_overlap_another_domains() {
        const M: u64 = 1 << 20;
        let disks = [None, Some((M, 4 * M)), None, Some((8 * M, M))];
        // Touching ends are fine; a byte in common is not.
        assert_eq!(disk_overlap(&disks, 2, (0, M)), None);
        assert_eq!(disk_overlap(&disks, 2, (5 * M, 3 * M)), None);
        assert_eq!(disk_overlap(&disks, 2, (9 * M, 100 * M)), None);
        assert_eq!(disk_overlap(&disks, 2, (0, M + 1)), Some((1, (M, 4 * M))));
        assert_eq!(
            disk_overlap(&disks, 2, (5 * M - 512, 512)),
            Some((1, (M, 4 * M)))
        );
        assert_eq!(disk_overlap(&disks, 2, (2 * M, M)), Some((1, (M, 4 * M))));
        assert_eq!(disk_overlap(&disks, 2, (0, 64 * M)), Some((1, (M, 4 * M))));
        assert_eq!(
            disk_overlap(&disks, 2, (8 * M + 512, 512)),
            Some((3, (8 * M, M)))
        );
        // A domain's own region is not in its way (it is being replaced).
        assert_eq!(disk_overlap(&disks, 1, (2 * M, M)), None);
        // Past the end of the address space: no wrap-around.
        assert_eq!(disk_overlap(&disks, 2, (u64::MAX - 512, u64::MAX)), None);
    }

    #[test]
    fn handshake_and_disconnect() {
        let mut b = Bus::new();
        let k = key(kind::BLOCK, 0);
        assert_eq!(b.get(3, k), Err(Errno::NoEnt));
        b.publish(3, k, 8, 2, 1, 0x02fe_0000_0001).unwrap();
        let d = b.get(3, k).unwrap();
        assert_eq!(
            (d.gref, d.port, d.front, d.back, d.features, d.front_param),
            (8, 2, state::INITIALISED, 0, 1, 0x02fe_0000_0001)
        );
        assert_eq!(b.next(3, 0), Ok(k));
        assert_eq!(b.next(3, k), Err(Errno::NoEnt));
        b.set_back(3, k, state::CONNECTED as u64, 8192, 1).unwrap();
        let d = b.get(3, k).unwrap();
        assert_eq!((d.back_param, d.back_features), (8192, 1));
        b.set_front(3, k, state::CLOSED as u64).unwrap();
        assert_eq!(b.get(3, k).unwrap().front, state::CLOSED);
        // Reconnecting starts a new handshake, with the features asked for now.
        b.publish(3, k, 9, 4, 0, 0).unwrap();
        let d = b.get(3, k).unwrap();
        assert_eq!(
            (d.gref, d.port, d.front, d.back, d.features, d.front_param),
            (9, 4, state::INITIALISED, state::UNKNOWN, 0, 0)
        );
        assert_eq!(
            d.back_features, 0,
            "the backend's answer is for the old handshake"
        );
        b.remove_domain(3);
        assert_eq!(b.get(3, k), Err(Errno::NoEnt));
    }

    #[test]
    fn a_dying_domains_devices_read_as_closed() {
        let mut b = Bus::new();
        let (k0, k1) = (key(kind::BLOCK, 0), key(kind::NET, 0));
        b.publish(4, k0, 8, 2, 0, 0).unwrap();
        b.publish(4, k1, 9, 3, 0, 0).unwrap();
        b.publish(5, k0, 8, 2, 0, 0).unwrap();
        b.set_front(4, k1, state::CLOSED as u64).unwrap();
        assert_eq!(b.front_gone(4), 1, "only the open device changes");
        assert_eq!(b.get(4, k0).unwrap().front, state::CLOSED);
        assert_eq!(b.get(5, k0).unwrap().front, state::INITIALISED);
        assert_eq!(b.front_gone(4), 0);
        assert_eq!(b.front_gone(6), 0, "a domain with no devices");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut b = Bus::new();
        assert_eq!(b.publish(1, 0, 8, 2, 0, 0), Err(Errno::Inval), "kind 0");
        assert_eq!(b.publish(1, 1 << 40, 8, 2, 0, 0), Err(Errno::Inval));
        assert_eq!(b.publish(1, key(2, 0), 1 << 33, 2, 0, 0), Err(Errno::Inval));
        assert_eq!(b.set_front(1, key(2, 0), 1), Err(Errno::NoEnt));
        b.publish(1, key(2, 0), 8, 2, 0, 0).unwrap();
        assert_eq!(b.set_front(1, key(2, 0), 0), Err(Errno::Inval));
        assert_eq!(b.set_front(1, key(2, 0), 7), Err(Errno::Inval));
        assert_eq!(b.set_back(1, key(2, 0), 99, 0, 0), Err(Errno::Inval));
        for i in 1..MAX_DEVICES as u32 {
            b.publish(1, key(2, i), 8, 2, 0, 0).unwrap();
        }
        assert_eq!(b.publish(1, key(2, 99), 8, 2, 0, 0), Err(Errno::NoSpc));
        // Another domain is unaffected.
        assert_eq!(b.next(2, 0), Err(Errno::NoEnt));
    }
}
