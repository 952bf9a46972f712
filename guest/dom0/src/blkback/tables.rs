//! blkback's bookkeeping, indexed instead of searched: a frontend's mapped data pages by grant
//! reference, and the requests at the disk by tag, each with how it holds its pages ([`Held`]).
//! Every request looks up each of its pages twice (taken, then released) and its tag once; in
//! B-trees those searches were about half of blkback's instructions per request (measured under
//! `-icount`, docs/io.md).

use alloc::vec::Vec;

/// Values by grant reference, in a table indexed by the reference. A domain has at most
/// [`MAX_GREFS`] references (Ferrite's grant-table limit), so the table stays bounded (it
/// grows to the largest reference used); a reference beyond that is refused.
pub struct ByGref<T> {
    slots: Vec<Option<T>>,
    len: usize,
}

/// Grant references a domain can have: Ferrite's table limit.
pub const MAX_GREFS: u32 =
    ferrite_abi::grant::MAX_TABLE_PAGES as u32 * ferrite_abi::grant::ENTRIES_PER_PAGE;

impl<T> ByGref<T> {
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get_mut(&mut self, gref: u32) -> Option<&mut T> {
        self.slots.get_mut(gref as usize)?.as_mut()
    }

    /// Stores `v` under `gref`, replacing what was there; gives `v` back if `gref` is beyond
    /// [`MAX_GREFS`].
    pub fn insert(&mut self, gref: u32, v: T) -> Result<(), T> {
        if gref >= MAX_GREFS {
            return Err(v);
        }
        let i = gref as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace(v).is_none() {
            self.len += 1;
        }
        Ok(())
    }

    pub fn remove(&mut self, gref: u32) -> Option<T> {
        let v = self.slots.get_mut(gref as usize)?.take();
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// Every entry, by ascending reference.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as u32, v.as_ref()?)))
    }
}

/// Values under small integer keys that it hands out itself: a key is a slot, reused once its
/// value is removed. blkback's requests at the disk, by the tag the disk gives back.
pub struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key the next [`Slab::insert`] will use (the disk needs the tag before the request
    /// is kept).
    pub fn next_key(&self) -> u64 {
        self.free.last().copied().unwrap_or(self.slots.len()) as u64
    }

    /// Keeps `v`; returns its key ([`Slab::next_key`] before the call).
    pub fn insert(&mut self, v: T) -> u64 {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(v);
                i as u64
            }
            None => {
                self.slots.push(Some(v));
                (self.slots.len() - 1) as u64
            }
        }
    }

    pub fn remove(&mut self, key: u64) -> Option<T> {
        let i = usize::try_from(key).ok()?;
        let v = self.slots.get_mut(i)?.take();
        if v.is_some() {
            self.len -= 1;
            self.free.push(i);
        }
        v
    }
}

/// How each request at the disk holds its pages, by its tag ([`Slab`]'s key), in arrays that
/// stay put: a request's record is moved into the slab and out again, and with up to 64 pages
/// in it every move would copy half a kilobyte. A set is filled in place, before the request
/// is kept, and read in place when it completes.
pub struct PagesByTag<const N: usize> {
    sets: Vec<[Held; N]>,
}

impl<const N: usize> PagesByTag<N> {
    pub const fn new() -> Self {
        Self { sets: Vec::new() }
    }

    /// Tag `tag`'s set, made (of nothing held) if it is new.
    pub fn get_mut(&mut self, tag: u64) -> &mut [Held; N] {
        let i = tag as usize;
        if i >= self.sets.len() {
            self.sets.resize(i + 1, [Held::NOTHING; N]);
        }
        &mut self.sets[i]
    }

    /// Tag `tag`'s set: nothing held for a tag never used.
    pub fn get(&self, tag: u64) -> &[Held] {
        self.sets.get(tag as usize).map_or(&[], |s| &s[..])
    }
}

/// How a request holds one of its pages, in one word: 0, nothing; a grant reference `<< 2 | 1`,
/// through its frontend's cache; a page's address `| 2`, mapped for this request alone.
///
/// One word because every request's eight are copied as the request is kept and given back.
/// An enum with a 32-bit tag left the rest of blkback's record of a request 4-byte aligned,
/// which the strict-alignment `memcpy` copies a byte at a time: about 600 instructions per
/// request (measured under `-icount`; docs/io.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held(u64);

/// A [`Held`] taken apart.
pub enum Hold {
    Nothing,
    /// Through its frontend's cache, under this grant reference.
    Cached(u32),
    /// Mapped at this address for this request alone (no persistent grants, or the cache
    /// could not take it).
    Own(u64),
}

impl Held {
    pub const NOTHING: Held = Held(0);

    pub fn cached(gref: u32) -> Self {
        Held((gref as u64) << 2 | 1)
    }

    /// `ipa` is a page's address, so its low bits are free.
    pub fn own(ipa: u64) -> Self {
        Held(ipa | 2)
    }

    pub fn get(self) -> Hold {
        match self.0 & 3 {
            1 => Hold::Cached((self.0 >> 2) as u32),
            2 => Hold::Own(self.0 & !3),
            _ => Hold::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;

    /// xorshift64*, for the model tests.
    fn rng(s: &mut u64) -> u64 {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn by_gref_behaves_like_a_map_within_the_limit() {
        let mut t = ByGref::new();
        let mut m = BTreeMap::new();
        let mut s = 0x1234_5678_9abc_def1u64;
        for _ in 0..20_000 {
            let g = (rng(&mut s) % (MAX_GREFS as u64 + 64)) as u32;
            match rng(&mut s) % 3 {
                0 => {
                    let r = t.insert(g, g ^ 7);
                    if g < MAX_GREFS {
                        assert!(r.is_ok());
                        m.insert(g, g ^ 7);
                    } else {
                        assert_eq!(r, Err(g ^ 7), "a reference past the limit is refused");
                    }
                }
                1 => assert_eq!(t.remove(g), m.remove(&g)),
                _ => assert_eq!(t.get_mut(g).copied(), m.get(&g).copied()),
            }
            assert_eq!(t.len(), m.len());
        }
        let all: Vec<(u32, u32)> = t.iter().map(|(g, v)| (g, *v)).collect();
        let want: Vec<(u32, u32)> = m.into_iter().collect();
        assert_eq!(all, want);
    }

    #[test]
    fn held_gives_back_what_it_was_made_of() {
        assert!(matches!(Held::NOTHING.get(), Hold::Nothing));
        assert!(matches!(Held::default().get(), Hold::Nothing));
        for g in [0, 1, 255, MAX_GREFS - 1, u32::MAX] {
            assert!(
                matches!(Held::cached(g).get(), Hold::Cached(x) if x == g),
                "gref {g}"
            );
        }
        for ipa in [
            0x1000u64,
            0x4000_0000,
            0xffff_ffff_f000,
            0x8000_0000_0000_0000,
        ] {
            assert!(
                matches!(Held::own(ipa).get(), Hold::Own(x) if x == ipa),
                "ipa {ipa:#x}"
            );
        }
        assert_eq!(core::mem::size_of::<Held>(), 8);
    }

    #[test]
    fn page_sets_stay_under_their_tag() {
        let mut p: PagesByTag<4> = PagesByTag::new();
        assert!(p.get(3).is_empty(), "a tag never used holds nothing");
        p.get_mut(3)[1] = Held::cached(9);
        p.get_mut(0)[0] = Held::own(0x2000);
        assert!(matches!(p.get(3)[1].get(), Hold::Cached(9)));
        assert!(matches!(p.get(0)[0].get(), Hold::Own(0x2000)));
        assert!(matches!(p.get(1)[0].get(), Hold::Nothing));
        assert_eq!(p.get(1).len(), 4);
    }

    #[test]
    fn slab_keys_are_unique_while_held_and_reused_after() {
        let mut sl = Slab::new();
        let mut held: BTreeMap<u64, u32> = BTreeMap::new();
        let mut s = 77u64;
        for n in 0..20_000u32 {
            if held.len() < 40 && rng(&mut s).is_multiple_of(2) {
                let k = sl.next_key();
                assert_eq!(sl.insert(n), k);
                assert!(held.insert(k, n).is_none(), "key {k} handed out twice");
            } else if let Some((&k, _)) = held.iter().nth((rng(&mut s) % 41) as usize) {
                assert_eq!(sl.remove(k), held.remove(&k));
                assert_eq!(sl.remove(k), None, "removed twice");
            }
            assert_eq!(sl.is_empty(), held.is_empty());
        }
        // Reused: never more slots than were held at once.
        assert!(sl.slots.len() <= 41);
        assert_eq!(sl.remove(u64::MAX), None);
    }
}
