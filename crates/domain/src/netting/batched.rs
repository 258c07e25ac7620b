//! Netting a run of instructions with their history lookups issued together.
//!
//! Why: the history tables (captures, originals, refunds) hold millions of entries, so nearly
//! every lookup misses the cache, and `apply` on one instruction after another waits for
//! memory once per lookup, in turn. Here the keys of the next [`WARM`] instructions are built
//! once, their entries looked up together (independent loads the processor keeps in flight at
//! once, `SlicedMap::warm`), and then each is applied with the keys already built. An earlier
//! try that built each key twice (once to warm, once to apply) lost in building what it won
//! in waiting (docs/benchmarks.md).

use super::{id_key, original_key, Key, Netter, Placement};
use crate::instruction::{Body, Instruction};
use crate::reject::Reject;

/// How many instructions are warmed at a time: enough loads to keep the memory system busy,
/// few enough that the first entries are still in cache when their instruction is applied.
const WARM: usize = 16;

/// History entries (captures, originals and refunds) above which lookups are warmed: about
/// 4 MB of 64-byte entries, more than a core's own caches hold. Below it the entries are in
/// cache anyway and warming only looks each up twice (the criterion netting stage, 20,000
/// lines, ran 20% slower warmed). Tests warm once any history is held.
const WARM_ABOVE: usize = if cfg!(test) { 0 } else { 1 << 16 };

/// The history keys an instruction looks up or inserts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Keys {
    /// A capture's own key in `captures`.
    Capture { own: Key },
    /// A refund's original's key (in `captures` and `originals`) and its own id's (in `refunds`).
    Refund { original: Key, own: Key },
    /// The key of the refund a reversal undoes (in `refunds`).
    Reversal { reversed: Key },
}

impl Keys {
    /// The keys of `instruction`.
    pub(super) fn of(instruction: &Instruction) -> Keys {
        match &instruction.body {
            Body::Capture => Keys::Capture { own: original_key(&instruction.merchant_id, &instruction.id) },
            Body::Refund(refund) => Keys::Refund {
                original: original_key(&instruction.merchant_id, &refund.original_transaction_id),
                own: id_key(&instruction.id),
            },
            Body::RefundReversal { reverses } => Keys::Reversal { reversed: id_key(reverses) },
        }
    }
}

impl Netter {
    /// [`Netter::apply`] on each of `instructions` in order, handing each result to `done`
    /// with the instruction and the caller's `T` that came with it; the same results and state
    /// as applying them one by one, with the history lookups of the next few issued together
    /// first (see the module docs).
    pub fn apply_all<'a, T>(
        &mut self,
        instructions: impl IntoIterator<Item = (u64, &'a Instruction, Placement, T)>,
        mut done: impl FnMut(T, &'a Instruction, Result<(), Reject>),
    ) {
        let mut run: Vec<(u64, &'a Instruction, Placement, T, Keys)> = Vec::with_capacity(WARM);
        let mut instructions = instructions.into_iter().peekable();
        while instructions.peek().is_some() {
            let next = instructions.by_ref().take(WARM);
            run.extend(next.map(|(seq, ins, place, with)| (seq, ins, place, with, Keys::of(ins))));
            if self.history_len() > WARM_ABOVE {
                self.warm(run.iter().map(|&(.., keys)| keys));
            }
            for (seq, instruction, place, with, keys) in run.drain(..) {
                done(with, instruction, self.apply_keyed(seq, instruction, place, keys));
            }
        }
    }

    /// Looks up the history entries `keys` will touch, dropping the answers.
    fn warm(&self, keys: impl Iterator<Item = Keys> + Clone) {
        let state = &self.state;
        let originals = keys.clone().filter_map(|k| match k {
            Keys::Refund { original, .. } => Some(original),
            _ => None,
        });
        state.captures.warm(keys.clone().filter_map(|k| match k {
            Keys::Capture { own } => Some(own),
            Keys::Refund { original, .. } => Some(original),
            Keys::Reversal { .. } => None,
        }));
        state.originals.warm(originals);
        state.refunds.warm(keys.filter_map(|k| match k {
            Keys::Refund { own, .. } => Some(own),
            Keys::Reversal { reversed } => Some(reversed),
            Keys::Capture { .. } => None,
        }));
    }
}
