//! [`KeyQueue`]: the FIFO of keys behind each of the policy's queues, in blocks of
//! [`BLOCK_KEYS`] keys, so it costs 8 bytes a key plus at most two blocks at any length.
//!
//! A `VecDeque<u64>` doubles its buffer when it grows and keeps it when it shrinks: just
//! after a doubling it holds 16 bytes a key, which took index + policy past 64 bytes a
//! chunk (`store::flash`'s test measured 64.8 at worst). Blocks grow and shrink with the
//! queue, one at a time.

use std::collections::VecDeque;

/// A key, as `policy::Key` (spelled out here so the two files do not import each other).
type Key = u64;

/// Keys per block: 4 KiB of keys, small against any cache that evicts, large enough that
/// allocating one is rare.
pub const BLOCK_KEYS: usize = 512;

type Block = Box<[Key; BLOCK_KEYS]>;

/// A FIFO of keys in fixed-size blocks.
#[derive(Default)]
pub struct KeyQueue {
    blocks: VecDeque<Block>,
    /// Keys already popped from the first block.
    head: usize,
    /// Keys pushed into the last block.
    tail: usize,
    /// One emptied block kept for the next push, so a queue at a block boundary does not
    /// allocate and free a block on every push and pop.
    spare: Option<Block>,
}

impl KeyQueue {
    pub fn push_back(&mut self, key: Key) {
        if self.blocks.is_empty() || self.tail == BLOCK_KEYS {
            let block = self
                .spare
                .take()
                .unwrap_or_else(|| Box::new([0; BLOCK_KEYS]));
            self.blocks.push_back(block);
            self.tail = 0;
        }
        let last = self.blocks.back_mut().expect("a block was just ensured");
        last[self.tail] = key;
        self.tail += 1;
    }

    pub fn pop_front(&mut self) -> Option<Key> {
        let first = self.blocks.front()?;
        let only = self.blocks.len() == 1;
        if only && self.head == self.tail {
            return None;
        }
        let key = first[self.head];
        self.head += 1;
        let emptied = if only {
            self.head == self.tail
        } else {
            self.head == BLOCK_KEYS
        };
        if emptied {
            let block = self.blocks.pop_front().expect("the first block exists");
            self.spare.get_or_insert(block);
            self.head = 0;
            if self.blocks.is_empty() {
                self.tail = 0;
            }
        }
        Some(key)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self.blocks.len() {
            0 => 0,
            blocks => (blocks - 1) * BLOCK_KEYS + self.tail - self.head,
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held: the blocks, the spare, and the list of blocks.
    pub fn memory_bytes(&self) -> usize {
        let blocks = self.blocks.len() + usize::from(self.spare.is_some());
        blocks * size_of::<[Key; BLOCK_KEYS]>() + self.blocks.capacity() * size_of::<Block>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_out_in_order_across_blocks() {
        let mut queue = KeyQueue::default();
        let mut next_out = 0;
        let mut next_in = 0;
        // Grow past several blocks, drain part, grow again, drain all.
        for (push, pop) in [(3 * BLOCK_KEYS + 7, BLOCK_KEYS + 3), (2 * BLOCK_KEYS, 0)] {
            for _ in 0..push {
                queue.push_back(next_in);
                next_in += 1;
            }
            for _ in 0..pop {
                assert_eq!(queue.pop_front(), Some(next_out));
                next_out += 1;
            }
            assert_eq!(queue.len() as u64, next_in - next_out);
        }
        while let Some(key) = queue.pop_front() {
            assert_eq!(key, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(queue.is_empty());
        // Empty, it can be used again.
        queue.push_back(42);
        assert_eq!((queue.pop_front(), queue.pop_front()), (Some(42), None));
    }

    #[test]
    fn memory_follows_the_length_within_two_blocks() {
        let mut queue = KeyQueue::default();
        let block_bytes = BLOCK_KEYS * size_of::<Key>();
        for n in 1..=20 * BLOCK_KEYS as u64 {
            queue.push_back(n);
        }
        for _ in 0..15 * BLOCK_KEYS {
            queue.pop_front();
        }
        let keys = queue.len() * size_of::<Key>();
        assert!(queue.memory_bytes() <= keys + 2 * block_bytes + 1024);
    }
}
