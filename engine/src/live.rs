//! Which connection ids are open, readable from any thread.
//!
//! A loop writes the generation of the connection in a slot when the
//! connection is accepted and clears it when the connection ends. Host
//! threads read it, so a push, close or subscribe aimed at a connection that
//! has already ended is answered "closed" at once (`Ok(false)`, C
//! `SWITCHYARD_STALE`) instead of being posted to a loop that would drop it.
//!
//! A check races with a close that happens right after it: the call then
//! reports the message as posted and the loop drops it, as for any message
//! that arrives after the close. The answer is exact for every connection
//! that ended before the call began.
//!
//! Pure: no sockets. Slots are grouped in chunks of 4,096 allocated when a
//! loop first uses a slot in them, so an engine with few connections holds
//! only a small index per loop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::ids::{RawId, MAX_SLOTS};

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Set in an open slot's word, above the 21-bit generation.
const OPEN: u32 = 1 << 31;

type Chunk = Box<[AtomicU32]>;

/// Open connection ids of one loop: one word per slot, `OPEN | generation`
/// while the slot's connection is open, 0 otherwise.
pub(crate) struct LiveIds {
    chunks: Box<[OnceLock<Chunk>]>,
}

impl Default for LiveIds {
    fn default() -> Self {
        LiveIds {
            chunks: (0..MAX_SLOTS / CHUNK).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl LiveIds {
    /// Marks `id` open. Called by the owning loop only.
    pub(crate) fn open(&self, id: RawId) {
        let chunk = self.chunks[id.slot >> CHUNK_BITS]
            .get_or_init(|| (0..CHUNK).map(|_| AtomicU32::new(0)).collect());
        chunk[id.slot & (CHUNK - 1)].store(OPEN | id.generation, Ordering::Release);
    }

    /// Marks `id`'s slot closed. Called by the owning loop only.
    pub(crate) fn close(&self, id: RawId) {
        if let Some(chunk) = self.chunks[id.slot >> CHUNK_BITS].get() {
            chunk[id.slot & (CHUNK - 1)].store(0, Ordering::Release);
        }
    }

    /// Whether `id` is open now (any thread).
    pub(crate) fn is_open(&self, id: RawId) -> bool {
        let Some(chunk) = self
            .chunks
            .get(id.slot >> CHUNK_BITS)
            .and_then(OnceLock::get)
        else {
            return false;
        };
        chunk[id.slot & (CHUNK - 1)].load(Ordering::Acquire) == OPEN | id.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::GenSlab;

    fn raw(slot: usize, generation: u32) -> RawId {
        RawId {
            core: 0,
            slot,
            generation,
        }
    }

    #[test]
    fn open_close_and_reuse_of_a_slot() {
        let live = LiveIds::default();
        let a = raw(5, 1);
        assert!(!live.is_open(a), "nothing is open at first");
        live.open(a);
        assert!(live.is_open(a));
        assert!(!live.is_open(raw(5, 2)), "another generation of the slot");
        assert!(!live.is_open(raw(6, 1)), "a neighbouring slot");
        live.close(a);
        assert!(!live.is_open(a));
        let b = raw(5, 2);
        live.open(b);
        assert!(live.is_open(b));
        assert!(!live.is_open(a), "the slot's old id stays closed");
        // Slots in chunks never touched, the last slot included.
        assert!(!live.is_open(raw(MAX_SLOTS - 1, 0)));
        live.close(raw(MAX_SLOTS - 1, 0));
        live.open(raw(MAX_SLOTS - 1, 0));
        assert!(live.is_open(raw(MAX_SLOTS - 1, 0)));
    }

    /// Follows a slab through 20,000 random inserts and removes: the table
    /// answers open exactly for the ids the slab holds, old ids included.
    #[test]
    fn agrees_with_the_slab_under_churn() {
        let live = LiveIds::default();
        let mut slab: GenSlab<()> = GenSlab::new(0);
        let mut held: Vec<RawId> = Vec::new();
        let mut gone: Vec<RawId> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if held.is_empty() || seed % 5 < 3 {
                let id = slab.insert(()).expect("room");
                live.open(id);
                held.push(id);
            } else {
                let id = held.swap_remove((seed >> 8) as usize % held.len());
                slab.remove(id).expect("held");
                live.close(id);
                gone.push(id);
            }
        }
        for &id in &held {
            assert!(live.is_open(id), "{id:?} is held");
        }
        for &id in &gone {
            assert_eq!(live.is_open(id), slab.get(id).is_some(), "{id:?}");
            assert!(!live.is_open(id), "{id:?} was removed");
        }
    }
}
