//! How an open window holds its details: a fixed 64-byte record per accepted instruction, with
//! no heap field of its own, and the record's strings (id, reference, payee) packed into the
//! window's string arena, in chunks that are filled and never moved. A [`Detail`] with owned
//! strings exists only once the window closes.
//!
//! Why: details are most of what `net` holds until its input ends (docs/benchmarks.md). As a
//! `Detail` in a `Vec` per batch, one cost 128 bytes, plus a 72-byte boxed payee for a refund,
//! plus the slack of each `Vec`'s doubling; here a capture is 64 bytes and its id, a refund 64
//! bytes and its five strings.

use compact_str::CompactString;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::batch::{Detail, Effect};
use super::closed::{credit_of, DetailView};
use crate::calendar::WindowId;
use crate::instruction::{Body, Instruction, Kind, PayeeView, RefundFields};
use crate::money::Minor;

/// Bytes per arena chunk. A record's strings (at most 64 + 64 + 560 + 34 + 35 bytes: two ids,
/// and a payee of 140 characters of up to four bytes) always fit one.
const CHUNK: usize = 1 << 16;

/// The longest payee name a span holds: 140 characters of up to four bytes. With four strings
/// of at most 255 bytes, a record's strings always fit one chunk.
const MAX_NAME_BYTES: usize = 560;

/// No late origin (`late_from`). No window of a valid instruction ends at the epoch (event
/// times start there), and zero is one byte in a checkpoint where `i64::MIN` is ten.
const NOT_LATE: i64 = 0;

/// A window's strings, chunk by chunk. Chunks are `String`s, so a string is sliced out of one
/// with two O(1) boundary checks instead of a UTF-8 validation per read (the encoders read
/// every detail and every credit's payee this way; with a validation per read, `from_utf8`
/// was 9% of `net`'s samples). A chunk
/// serializes as a byte string, exactly as the `Vec<u8>` it was before, and a checkpoint's
/// chunk that is not UTF-8 fails to decode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Strings {
    chunks: Vec<String>,
}

/// Where a record's strings are: their chunk, their start in it, and each one's length
/// (id, reference, payee name, account, bank).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Span {
    chunk: u32,
    at: u16,
    id: u8,
    reference: u8,
    name: u16,
    account: u8,
    bank: u8,
}

impl Strings {
    /// Appends `parts` contiguously and says where they are. The strings of an accepted
    /// instruction always fit (they are validated at parse).
    fn push(&mut self, parts: [&str; 5]) -> Span {
        self.try_push(parts).expect("ids, accounts and banks are validated to 64 bytes, payee names to 140 characters")
    }

    /// [`Strings::push`], or `None` when a string is longer than a span can say (a damaged
    /// sealed part, read back).
    fn try_push(&mut self, [id, reference, name, account, bank]: [&str; 5]) -> Option<Span> {
        let len = id.len() + reference.len() + name.len() + account.len() + bank.len();
        let narrow = |s: &str| u8::try_from(s.len()).ok();
        let span = Span {
            chunk: 0,
            at: 0,
            id: narrow(id)?,
            reference: narrow(reference)?,
            name: u16::try_from(name.len()).ok().filter(|&n| usize::from(n) <= MAX_NAME_BYTES)?,
            account: narrow(account)?,
            bank: narrow(bank)?,
        };
        if self.chunks.last().is_none_or(|c| c.len() + len > CHUNK) {
            self.chunks.push(String::with_capacity(CHUNK));
        }
        let chunk = self.chunks.last_mut().expect("a chunk");
        // A chunk restored from a checkpoint has no spare capacity: grow it once to a full one.
        if chunk.capacity() < CHUNK {
            chunk.reserve_exact(CHUNK - chunk.len());
        }
        let at = u16::try_from(chunk.len()).expect("a chunk holds 2^16 bytes");
        for part in [id, reference, name, account, bank] {
            chunk.push_str(part);
        }
        let chunk = u32::try_from(self.chunks.len() - 1).expect("fewer than 2^32 chunks in a window");
        Some(Span { chunk, at, ..span })
    }

    /// The payee at `span` (empty strings for a record that is no refund).
    pub(crate) fn payee(&self, span: Span) -> PayeeView<'_> {
        let [_, _, name, account, bank] = self.get(span);
        PayeeView { name, account, bank }
    }

    /// Reads the first and last byte of each span's strings: a loop of independent loads,
    /// which the processor keeps many of in flight at once, so that the strings are in cache
    /// when they are then read record by record. The arena is in input order and records are
    /// read merchant by merchant, so without this each read waits for memory in turn (at five
    /// million lines that wait was a tenth of `net`'s time).
    fn warm(&self, spans: impl Iterator<Item = Span>) {
        let mut fold = 0u8;
        for span in spans {
            let len = usize::from(span.id)
                + usize::from(span.reference)
                + usize::from(span.name)
                + usize::from(span.account)
                + usize::from(span.bank);
            if let Some(chunk) = self.chunks.get(span.chunk as usize).map(String::as_bytes) {
                let at = usize::from(span.at);
                fold ^=
                    chunk.get(at).copied().unwrap_or(0) ^ chunk.get(at + len.saturating_sub(1)).copied().unwrap_or(0);
            }
        }
        std::hint::black_box(fold);
    }

    /// The strings at `span`, in the order they were pushed.
    fn get(&self, span: Span) -> [&str; 5] {
        let lens = [span.id.into(), span.reference.into(), span.name.into(), span.account.into(), span.bank.into()];
        let at = usize::from(span.at);
        // Whole `str`s were pushed, so each end is a character boundary.
        let mut rest = &self.chunks[span.chunk as usize][at..at + lens.iter().sum::<usize>()];
        lens.map(|len: usize| {
            let (part, after) = rest.split_at(len);
            rest = after;
            part
        })
    }
}

/// One accepted instruction in an open window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    seq: u64,
    event_time: Timestamp,
    amount: Minor,
    fee: Minor,
    /// `WindowId::as_second` of its own window when it was netted late, else [`NOT_LATE`].
    late_from: i64,
    span: Span,
    kind: Kind,
    pub(crate) effect: Effect,
}

impl Stored {
    /// `instruction`, accepted at `seq` with `effect`, its strings into `strings`.
    pub(crate) fn new(
        seq: u64,
        instruction: &Instruction,
        (amount, fee): (Minor, Minor),
        late_from: Option<WindowId>,
        effect: Effect,
        strings: &mut Strings,
    ) -> Stored {
        let (kind, parts) = match &instruction.body {
            Body::Capture => (Kind::Capture, [instruction.id.as_str(), "", "", "", ""]),
            Body::Refund(refund) => {
                let RefundFields { original_transaction_id, payee, .. } = refund;
                let parts = [&instruction.id, original_transaction_id, &payee.name, &payee.account, &payee.bank];
                (Kind::Refund, parts.map(CompactString::as_str))
            }
            Body::RefundReversal { reverses } => {
                (Kind::RefundReversal, [instruction.id.as_str(), reverses, "", "", ""])
            }
        };
        assert!(late_from.is_none_or(|w| w.as_second() != NOT_LATE), "a window ending at the epoch");
        Stored {
            seq,
            event_time: instruction.event_time,
            amount,
            fee,
            late_from: late_from.map_or(NOT_LATE, WindowId::as_second),
            span: strings.push(parts),
            kind,
            effect,
        }
    }

    /// Its id.
    pub(crate) fn id<'s>(&self, strings: &'s Strings) -> &'s str {
        strings.get(self.span)[0]
    }

    /// A record for `detail` (a closed batch's, read back), its strings into `strings`; `None`
    /// when a string is longer than any accepted instruction's.
    pub(crate) fn from_detail(detail: &Detail, strings: &mut Strings) -> Option<Stored> {
        if detail.late_from.is_some_and(|w| w.as_second() == NOT_LATE) {
            return None;
        }
        let payee = detail.payee.as_deref();
        let parts = [
            detail.id.as_str(),
            detail.reference.as_deref().unwrap_or(""),
            payee.map_or("", |p| p.name.as_str()),
            payee.map_or("", |p| p.account.as_str()),
            payee.map_or("", |p| p.bank.as_str()),
        ];
        Some(Stored {
            seq: detail.seq,
            event_time: detail.event_time,
            amount: detail.amount,
            fee: detail.fee,
            late_from: detail.late_from.map_or(NOT_LATE, WindowId::as_second),
            span: strings.try_push(parts)?,
            kind: detail.kind,
            effect: detail.effect,
        })
    }

    /// The record as a closed batch shows it, its strings borrowed from `strings`.
    pub(crate) fn view<'s>(&self, strings: &'s Strings, credit: u32) -> DetailView<'s> {
        let [id, reference, name, account, bank] = strings.get(self.span);
        DetailView {
            seq: self.seq,
            id,
            kind: self.kind,
            event_time: self.event_time,
            amount: self.amount,
            fee: self.fee,
            reference: (self.kind != Kind::Capture).then_some(reference),
            payee: (self.kind == Kind::Refund).then_some(PayeeView { name, account, bank }),
            late_from: (self.late_from != NOT_LATE).then(|| WindowId::from_second(self.late_from)),
            effect: self.effect,
            credit: credit_of(credit),
        }
    }

    /// Where its strings are (a refund credit's creditor is its payee's).
    pub(crate) fn span(&self) -> Span {
        self.span
    }

    /// A refund's payee (whose account and bank its credit is grouped by), and its amount.
    pub(crate) fn paid_to<'s>(&self, strings: &'s Strings) -> (PayeeView<'s>, Minor) {
        (strings.payee(self.span), self.amount)
    }
}

/// Records to warm the strings of at a time (see [`Strings::warm`]): enough loads to keep the
/// memory system busy, few enough that their strings stay in cache until read.
const WARM_AHEAD: usize = 32;

/// `records` with their indices, the strings of the records ahead warmed as they go.
pub(crate) fn warmed<'a>(
    records: &'a [Stored],
    strings: &'a Strings,
) -> impl ExactSizeIterator<Item = (usize, &'a Stored)> + 'a {
    records.iter().enumerate().inspect(move |&(i, _)| {
        if i % WARM_AHEAD == 0 {
            let from = if i == 0 { 0 } else { i + WARM_AHEAD };
            let ahead = records.get(from..).unwrap_or_default();
            strings.warm(ahead.iter().take(if i == 0 { 2 * WARM_AHEAD } else { WARM_AHEAD }).map(Stored::span));
        }
    })
}

/// The record stays the size the memory budget counts on (docs/benchmarks.md).
const _: () = assert!(std::mem::size_of::<Stored>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_as_pushed_across_chunks_and_after_a_restore() {
        let mut strings = Strings::default();
        let name = "Ж".repeat(70) + &"🦀".repeat(70); // 140 characters, 420 bytes
        let mut spans = Vec::new();
        for i in 0..400 {
            let id = format!("r-{i:061}"); // 64 bytes
            let parts = [id.as_str(), "o-1", name.as_str(), "DE89370400440532013000", "COBADEFFXXX"];
            spans.push((strings.push(parts), id));
        }
        assert!(strings.chunks.len() > 1, "400 records of 573 bytes span chunks");
        assert!(strings.chunks.iter().all(|c| c.len() <= CHUNK));
        let mut restored = Strings { chunks: strings.chunks.iter().map(|c| c.as_str().to_owned()).collect() };
        let more = restored.push(["c-1", "", "", "", ""]);
        for (span, id) in &spans {
            for arena in [&strings, &restored] {
                assert_eq!(
                    arena.get(*span),
                    [id.as_str(), "o-1", name.as_str(), "DE89370400440532013000", "COBADEFFXXX"]
                );
            }
        }
        assert_eq!(restored.get(more), ["c-1", "", "", "", ""]);
    }

    #[test]
    fn chunks_serialize_as_the_byte_strings_checkpoints_hold() {
        let mut strings = Strings::default();
        strings.push(["c-1", "", "Zoë", "DE89370400440532013000", "COBADEFFXXX"]);
        let as_bytes: Vec<Vec<u8>> = strings.chunks.iter().map(|c| c.as_bytes().to_vec()).collect();
        let encoded = postcard::to_stdvec(&strings).expect("encode");
        assert_eq!(encoded, postcard::to_stdvec(&as_bytes).expect("encode"));
        let back: Strings = postcard::from_bytes(&encoded).expect("decode");
        assert_eq!(back.chunks, strings.chunks);
        let not_utf8 = postcard::to_stdvec(&vec![vec![0xffu8, 0xfe]]).expect("encode");
        assert!(postcard::from_bytes::<Strings>(&not_utf8).is_err());
    }
}
