//! Connection and request ids, and the generational slab that hands them out.
//!
//! An id is one integer below 2^53, so it survives a round trip through a
//! JavaScript number. It packs three fields:
//!
//! ```text
//!  52        32 31     24 23              0
//! [ generation ][  core  ][      slot      ]
//!    21 bits      8 bits       24 bits
//! ```
//!
//! The generation grows each time a slot is reused, so an id kept after its
//! connection or request ended no longer matches: looking it up gives `None`,
//! never another connection's data. The slab here is pure (no sockets) and is
//! used for the per-core connection table and the per-core pending-request
//! table.

use std::fmt;

const SLOT_BITS: u32 = 24;
const CORE_BITS: u32 = 8;
const GEN_BITS: u32 = 21;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const CORE_MASK: u64 = (1 << CORE_BITS) - 1;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// Most slots one core's slab can hold (2^24).
pub(crate) const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Most cores (loops) an engine can run (2^8).
pub const MAX_CORES: usize = 1 << CORE_BITS;

/// The three fields of an id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct RawId {
    pub(crate) core: usize,
    pub(crate) slot: usize,
    pub(crate) generation: u32,
}

impl RawId {
    pub(crate) fn pack(self) -> u64 {
        debug_assert!(self.core < MAX_CORES && self.slot < MAX_SLOTS);
        ((self.generation & GEN_MASK) as u64) << (SLOT_BITS + CORE_BITS)
            | (self.core as u64) << SLOT_BITS
            | self.slot as u64
    }

    pub(crate) fn unpack(id: u64) -> Option<RawId> {
        if id >= 1 << 53 {
            return None;
        }
        Some(RawId {
            core: ((id >> SLOT_BITS) & CORE_MASK) as usize,
            slot: (id & SLOT_MASK) as usize,
            generation: (id >> (SLOT_BITS + CORE_BITS)) as u32,
        })
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// The id as an integer below 2^53 (safe as a JavaScript number).
            pub fn as_u64(self) -> u64 {
                self.0
            }

            /// Rebuilds an id from [`as_u64`](Self::as_u64). Values of 2^53 or
            /// more are not ids and give `None`.
            pub fn from_u64(id: u64) -> Option<Self> {
                RawId::unpack(id).map(|_| Self(id))
            }

            pub(crate) fn from_raw(raw: RawId) -> Self {
                Self(raw.pack())
            }

            pub(crate) fn raw(self) -> RawId {
                RawId::unpack(self.0).expect("ids are constructed below 2^53")
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let raw = self.raw();
                write!(f, "{}({}:{}#{})", stringify!($name), raw.core, raw.slot, raw.generation)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// Identifies one WebSocket connection for its whole life. Stale after it
    /// closes: operations on a stale id report `Stale`, never touch another
    /// connection.
    ConnId
);
id_type!(
    /// Identifies one request whose reply is owed (a deferred reply).
    RequestId
);

/// A slab whose keys carry a generation, so a stale key misses.
#[derive(Debug)]
pub(crate) struct GenSlab<T> {
    core: usize,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> GenSlab<T> {
    pub(crate) fn new(core: usize) -> Self {
        assert!(core < MAX_CORES);
        GenSlab {
            core,
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `value` and returns its key, or gives the value back when the
    /// slab already holds 2^24 entries.
    pub(crate) fn insert(&mut self, value: T) -> Result<RawId, T> {
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                if self.entries.len() >= MAX_SLOTS {
                    return Err(value);
                }
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[slot];
        entry.generation = (entry.generation + 1) & GEN_MASK;
        entry.value = Some(value);
        self.len += 1;
        Ok(RawId {
            core: self.core,
            slot,
            generation: entry.generation,
        })
    }

    /// Asks the CPU to start loading `slot`'s entry (its first two cache
    /// lines): a fan-out walks a thousand subscribers whose connections
    /// are rarely in cache, and queueing to one waits on that load. Only a
    /// hint; nothing happens off x86-64 (or under Miri) or for a slot out
    /// of range.
    #[inline]
    #[cfg_attr(any(not(target_arch = "x86_64"), miri), allow(unused_variables))]
    pub(crate) fn prefetch(&self, slot: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if let Some(e) = self.entries.get(slot) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = std::ptr::from_ref(e).cast::<i8>();
            // SAFETY: a prefetch never faults and reads nothing visible;
            // `p` points into a live entry anyway.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            }
        }
    }

    fn entry(&self, id: RawId) -> Option<&Entry<T>> {
        if id.core != self.core {
            return None;
        }
        self.entries
            .get(id.slot)
            .filter(|e| e.generation == id.generation)
    }

    #[cfg(test)]
    pub(crate) fn get(&self, id: RawId) -> Option<&T> {
        self.entry(id).and_then(|e| e.value.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: RawId) -> Option<&mut T> {
        if id.core != self.core {
            return None;
        }
        self.entries
            .get_mut(id.slot)
            .filter(|e| e.generation == id.generation)
            .and_then(|e| e.value.as_mut())
    }

    /// The live entry in `slot`, whatever its generation, with its full key.
    pub(crate) fn get_slot_mut(&mut self, slot: usize) -> Option<(RawId, &mut T)> {
        let core = self.core;
        let entry = self.entries.get_mut(slot)?;
        let generation = entry.generation;
        entry.value.as_mut().map(|v| {
            (
                RawId {
                    core,
                    slot,
                    generation,
                },
                v,
            )
        })
    }

    pub(crate) fn remove(&mut self, id: RawId) -> Option<T> {
        self.entry(id)?;
        let value = self.entries[id.slot].value.take()?;
        self.free.push(id.slot as u32);
        self.len -= 1;
        Some(value)
    }

    /// Keys of every live entry.
    pub(crate) fn keys(&self) -> Vec<RawId> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(slot, e)| RawId {
                core: self.core,
                slot,
                generation: e.generation,
            })
            .collect()
    }

    /// Removes and returns every entry for which `pred` holds.
    pub(crate) fn drain_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<(RawId, T)> {
        let mut out = Vec::new();
        for (slot, e) in self.entries.iter_mut().enumerate() {
            if e.value.as_ref().is_some_and(&mut pred) {
                let value = e.value.take().expect("checked above");
                out.push((
                    RawId {
                        core: self.core,
                        slot,
                        generation: e.generation,
                    },
                    value,
                ));
                self.free.push(slot as u32);
            }
        }
        self.len -= out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_below_2_pow_53() {
        for &(core, slot, generation) in
            &[(0, 0, 0), (255, MAX_SLOTS - 1, GEN_MASK), (3, 12345, 77)]
        {
            let raw = RawId {
                core,
                slot,
                generation,
            };
            let id = raw.pack();
            assert!(id < 1 << 53);
            assert_eq!(RawId::unpack(id), Some(raw));
        }
        assert_eq!(RawId::unpack(1 << 53), None);
        assert!(ConnId::from_u64(u64::MAX).is_none());
    }

    #[test]
    fn stale_keys_miss_after_reuse() {
        let mut slab = GenSlab::new(2);
        let a = slab.insert("a").unwrap();
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b").unwrap();
        assert_eq!(a.slot, b.slot, "slot is reused");
        assert_ne!(a.generation, b.generation);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn other_core_keys_miss() {
        let mut slab = GenSlab::new(1);
        let a = slab.insert(1).unwrap();
        let foreign = RawId { core: 0, ..a };
        assert_eq!(slab.get(foreign), None);
    }

    #[test]
    fn drain_where_frees_slots() {
        let mut slab = GenSlab::new(0);
        for i in 0..10 {
            slab.insert(i).unwrap();
        }
        let even = slab.drain_where(|v| v % 2 == 0);
        assert_eq!(even.len(), 5);
        assert_eq!(slab.len(), 5);
        assert_eq!(slab.keys().len(), 5);
        for (id, _) in even {
            assert_eq!(slab.get(id), None);
        }
    }
}
