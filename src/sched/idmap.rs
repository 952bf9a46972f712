//! Maps keyed by domain id and by vCPU id, stored as vectors indexed by the id: the scheduler
//! looks a domain or a vCPU up several times per decision, and a B-tree's search cost more
//! instructions than the decision's own arithmetic. Ids are small (Ferrite's domain ids are
//! below `vm::MAX_DOMAINS`), so the vectors stay short. Iteration is in key order, as a
//! `BTreeMap`'s.

use super::{DomId, VcpuId};
use alloc::vec::Vec;
use core::ops::Index;

/// A map from domain id to `V`.
pub struct DomMap<V> {
    slots: Vec<Option<(DomId, V)>>,
}

impl<V> DomMap<V> {
    pub const fn new() -> Self {
        Self { slots: Vec::new() }
    }

    pub fn get(&self, k: &DomId) -> Option<&V> {
        self.slots.get(*k as usize)?.as_ref().map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, k: &DomId) -> Option<&mut V> {
        self.slots.get_mut(*k as usize)?.as_mut().map(|(_, v)| v)
    }

    pub fn contains_key(&self, k: &DomId) -> bool {
        self.get(k).is_some()
    }

    pub fn insert(&mut self, k: DomId, v: V) -> Option<V> {
        let i = k as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots[i].replace((k, v)).map(|(_, old)| old)
    }

    pub fn remove(&mut self, k: &DomId) -> Option<V> {
        let old = self.slots.get_mut(*k as usize)?.take().map(|(_, v)| v);
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        old
    }

    pub fn iter(&self) -> impl Iterator<Item = (&DomId, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }
}

impl<V> Index<&DomId> for DomMap<V> {
    type Output = V;

    fn index(&self, k: &DomId) -> &V {
        self.get(k).expect("no such domain in the map")
    }
}

/// A map from vCPU id to a scheduler slot: per domain, a vector indexed by the vCPU number.
pub struct VcpuMap {
    doms: DomMap<Vec<Option<usize>>>,
}

impl VcpuMap {
    pub const fn new() -> Self {
        Self {
            doms: DomMap::new(),
        }
    }

    pub fn get(&self, id: &VcpuId) -> Option<&usize> {
        self.doms.get(&id.dom)?.get(id.vcpu as usize)?.as_ref()
    }

    pub fn contains_key(&self, id: &VcpuId) -> bool {
        self.get(id).is_some()
    }

    pub fn insert(&mut self, id: VcpuId, slot: usize) -> Option<usize> {
        if !self.doms.contains_key(&id.dom) {
            self.doms.insert(id.dom, Vec::new());
        }
        let v = self.doms.get_mut(&id.dom).expect("inserted above");
        let i = id.vcpu as usize;
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        v[i].replace(slot)
    }

    pub fn remove(&mut self, id: &VcpuId) -> Option<usize> {
        let v = self.doms.get_mut(&id.dom)?;
        let old = v.get_mut(id.vcpu as usize)?.take();
        if v.iter().all(Option::is_none) {
            self.doms.remove(&id.dom);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom_map_behaves_as_a_map_in_key_order() {
        let mut m = DomMap::new();
        assert_eq!(m.insert(7, "b"), None);
        assert_eq!(m.insert(2, "a"), None);
        assert_eq!(m.insert(7, "c"), Some("b"));
        assert_eq!(m[&7], "c");
        assert!(m.contains_key(&2) && !m.contains_key(&3) && !m.contains_key(&900));
        let keys: Vec<DomId> = m.iter().map(|(&k, _)| k).collect();
        assert_eq!(keys, [2, 7]);
        assert_eq!(m.remove(&7), Some("c"));
        assert_eq!(m.remove(&7), None);
        assert_eq!(m.iter().count(), 1);
        *m.get_mut(&2).unwrap() = "z";
        assert_eq!(m.get(&2), Some(&"z"));
    }

    #[test]
    fn vcpu_map_finds_slots_by_domain_and_vcpu() {
        let mut m = VcpuMap::new();
        let id = |dom, vcpu| VcpuId { dom, vcpu };
        assert_eq!(m.insert(id(3, 1), 10), None);
        assert_eq!(m.insert(id(3, 0), 11), None);
        assert_eq!(m.get(&id(3, 1)), Some(&10));
        assert!(!m.contains_key(&id(3, 2)) && !m.contains_key(&id(4, 0)));
        assert_eq!(m.remove(&id(3, 1)), Some(10));
        assert_eq!(m.remove(&id(3, 0)), Some(11));
        assert!(!m.contains_key(&id(3, 0)));
        assert_eq!(m.insert(id(3, 0), 12), None);
    }
}
