//! S3-FIFO's ghost queue: the keys recently evicted from the small queue, remembered in
//! about 8 bytes each so that a key coming back soon after goes straight to the main queue.
//!
//! Not a FIFO of keys plus a set (8 bytes for the key in the FIFO, 8–20 more in a hash set):
//! a table of `u32` slots, each a 24-bit fingerprint of the key and the 8-bit *epoch* it was
//! remembered in. An epoch lasts `remembered / EPOCHS_REMEMBERED` insertions (rounded up)
//! and a slot is live for [`EPOCHS_REMEMBERED`] epochs (fewer for fewer than 8 keys), so
//! the table holds the last 7/8 to 8/8 of `remembered` keys in FIFO order (by epoch)
//! without storing an order. The table has twice as many slots as keys to remember, in buckets of eight: a key
//! lives in the bucket its hash picks, replacing a dead slot or else the bucket's oldest.
//!
//! Approximations, all harmless for a ghost (a wrong answer only changes which queue a new
//! entry starts in): two keys whose hashes agree in the bucket and the 24 fingerprint bits
//! are one key (a false hit, about 2 in 2^24 lookups at half load); a bucket with more than
//! eight live keys forgets its oldest early (rare at half load); a resize forgets
//! everything (it happens when the number of keys to remember doubles or quarters). Epochs
//! wrap at 256: a cursor clears one dead slot per insertion, so every slot is swept long
//! before its epoch could look young again (a sweep takes `2 × remembered` insertions,
//! 16 epochs; a wrap takes 256).
//!
//! **Architecture invariant:** no I/O, no clock, no locks (part of [`crate::cache`]).

/// Slots a bucket has (one 32-byte run, half a cache line).
const BUCKET_SLOTS: usize = 8;
/// Epochs a key stays remembered (the granularity of the FIFO: 1/8 of its length).
const EPOCHS_REMEMBERED: u8 = 8;
/// Slots per remembered key: the table runs at half load.
const SLOTS_PER_KEY: usize = 2;

/// The ghost: fingerprints of recently forgotten keys.
pub(crate) struct Ghost {
    /// `BUCKET_SLOTS` slots per bucket; 0 is empty, else `fingerprint << 8 | epoch`.
    slots: Vec<u32>,
    /// How many keys it remembers (the table was sized for this).
    remembered: usize,
    /// Insertions an epoch lasts: `remembered / EPOCHS_REMEMBERED`, rounded up.
    epoch_len: usize,
    /// Epochs a key stays live: `remembered / epoch_len`, rounded up (at most
    /// [`EPOCHS_REMEMBERED`]; fewer when fewer keys are remembered).
    live_epochs: u8,
    epoch: u8,
    /// Insertions since the epoch began.
    in_epoch: usize,
    /// The next slot the sweep looks at.
    cursor: usize,
}

impl Ghost {
    /// A ghost that remembers nothing until [`Ghost::resize`].
    pub(crate) fn new() -> Ghost {
        Ghost {
            slots: Vec::new(),
            remembered: 0,
            epoch_len: 1,
            live_epochs: 0,
            epoch: 0,
            in_epoch: 0,
            cursor: 0,
        }
    }

    /// Sizes the table for `remembered` keys, forgetting what it held, if that count is
    /// more than twice or less than a quarter of the current one (hysteresis: the count a
    /// policy asks for moves with its entries' average size).
    pub(crate) fn resize(&mut self, remembered: usize) {
        let current = self.remembered;
        if remembered <= current.saturating_mul(2) && remembered >= current / 4 && current > 0 {
            return;
        }
        let buckets = (remembered * SLOTS_PER_KEY).div_ceil(BUCKET_SLOTS).max(1);
        self.slots = vec![0; buckets * BUCKET_SLOTS];
        self.remembered = remembered.max(1);
        self.epoch_len = self.remembered.div_ceil(usize::from(EPOCHS_REMEMBERED));
        self.live_epochs = self.remembered.div_ceil(self.epoch_len) as u8;
        self.in_epoch = 0;
        self.cursor = 0;
    }

    /// Remembers `key` (forgetting the oldest keys beyond the table's count).
    pub(crate) fn insert(&mut self, key: u64) {
        if self.slots.is_empty() {
            return;
        }
        self.sweep_one();
        if self.in_epoch == self.epoch_len {
            self.epoch = self.epoch.wrapping_add(1);
            self.in_epoch = 0;
        }
        self.in_epoch += 1;
        let (bucket, fingerprint) = self.place(key);
        let epoch = self.epoch;
        let slots = &mut self.slots[bucket..bucket + BUCKET_SLOTS];
        // The key itself if present, else an empty slot, else the oldest (dead ones are
        // older than any live one).
        let chosen = slots
            .iter()
            .position(|&slot| slot != 0 && slot >> 8 == fingerprint)
            .or_else(|| slots.iter().position(|&slot| slot == 0))
            .unwrap_or_else(|| {
                (0..BUCKET_SLOTS)
                    .max_by_key(|&i| epoch.wrapping_sub(slots[i] as u8))
                    .expect("a bucket has slots")
            });
        slots[chosen] = fingerprint << 8 | u32::from(epoch);
    }

    /// Whether `key` is remembered; if so, forgets it (a ghost hit is used once).
    pub(crate) fn take(&mut self, key: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (bucket, fingerprint) = self.place(key);
        let (epoch, live_epochs) = (self.epoch, self.live_epochs);
        for slot in &mut self.slots[bucket..bucket + BUCKET_SLOTS] {
            if *slot >> 8 == fingerprint && live(epoch, live_epochs, *slot) {
                *slot = 0;
                return true;
            }
        }
        false
    }

    /// Bytes the table holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }

    /// The first slot of `key`'s bucket and its non-zero 24-bit fingerprint, from
    /// independent bits of a mixed hash (keys are chunk-id prefixes, but tests and the
    /// simulator use small integers).
    fn place(&self, key: u64) -> (usize, u32) {
        let hash = mix(key);
        let buckets = (self.slots.len() / BUCKET_SLOTS) as u64;
        // Multiply-shift maps the high 32 bits onto 0..buckets without a power of two.
        let bucket = ((hash >> 32) * buckets) >> 32;
        let fingerprint = (hash as u32 & 0x00ff_ffff).max(1);
        (bucket as usize * BUCKET_SLOTS, fingerprint)
    }

    /// Clears the slot under the cursor if it is dead, and moves the cursor on.
    fn sweep_one(&mut self) {
        let slot = self.slots[self.cursor];
        if slot != 0 && !live(self.epoch, self.live_epochs, slot) {
            self.slots[self.cursor] = 0;
        }
        self.cursor = (self.cursor + 1) % self.slots.len();
    }
}

/// Whether a non-empty slot was remembered fewer than `live_epochs` epochs before `epoch`.
fn live(epoch: u8, live_epochs: u8, slot: u32) -> bool {
    slot != 0 && epoch.wrapping_sub(slot as u8) < live_epochs
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_keys_once_and_forgets_old_ones() {
        let mut ghost = Ghost::new();
        ghost.resize(1000);
        for key in 0..1000u64 {
            ghost.insert(key);
        }
        // The most recent 7/8 are remembered (a few may have lost their bucket's slot).
        let recent = (500..1000u64).filter(|&k| ghost.take(k)).count();
        assert!(recent >= 495, "remembered {recent} of the last 500");
        assert!(!ghost.take(999), "a hit is used once");
        // After another 2000 insertions the first keys are long gone.
        for key in 10_000..12_000u64 {
            ghost.insert(key);
        }
        let old = (0..500u64).filter(|&k| ghost.take(k)).count();
        assert!(old <= 1, "{old} old keys still remembered");
        // Keys never inserted are (almost) never found.
        let false_hits = (1_000_000..1_100_000u64).filter(|&k| ghost.take(k)).count();
        assert!(false_hits <= 2, "{false_hits} false hits");
    }

    #[test]
    fn memory_is_eight_bytes_a_remembered_key() {
        let mut ghost = Ghost::new();
        ghost.resize(100_000);
        assert_eq!(ghost.memory_bytes(), 100_000 * 8);
        // Small changes keep the table; a doubling replaces it.
        ghost.insert(1);
        ghost.resize(150_000);
        assert!(ghost.take(1));
        ghost.resize(300_000);
        assert_eq!(ghost.memory_bytes(), 300_000 * 8);
    }

    #[test]
    fn an_empty_ghost_remembers_nothing() {
        let mut ghost = Ghost::new();
        ghost.insert(7);
        assert!(!ghost.take(7));
        assert_eq!(ghost.memory_bytes(), 0);
    }
}
