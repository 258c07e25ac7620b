//! Per-merchant generator state: recent originals that can still be refunded and recent
//! refunds that can be reversed (both bounded rings, so memory does not grow with the count).

use std::collections::VecDeque;
use std::io::{self, Write};

use clearhouse_domain::Currency;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rust_decimal::Decimal;

use crate::local_time;

const RING: usize = 32;

/// A transaction that can be refunded.
#[derive(Debug, Clone)]
pub(crate) struct Original {
    id: String,
    amount: i64,
    remaining: i64,
    time: Timestamp,
}

#[derive(Debug, Clone)]
struct Refund {
    id: String,
    amount: i64,
}

/// One merchant's generator state.
#[derive(Debug)]
pub(crate) struct MerchantState {
    id: String,
    currency: Currency,
    originals: VecDeque<Original>,
    refunds: VecDeque<Refund>,
}

impl MerchantState {
    pub(crate) fn new(index: u32, currency: Currency) -> Self {
        MerchantState { id: format!("M{index:05}"), currency, originals: VecDeque::new(), refunds: VecDeque::new() }
    }

    /// The merchant id (`M00042`).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    fn money(&self, minor: i64) -> Decimal {
        Decimal::new(minor, self.currency.minor_units())
    }

    /// A random amount in minor units, between 1 and 5000 major units.
    fn random_minor<R: Rng>(&self, rng: &mut R) -> i64 {
        let unit = 10_i64.pow(self.currency.minor_units());
        rng.random_range(unit..=5_000 * unit)
    }

    fn fee<R: Rng>(&self, minor: i64, rng: &mut R) -> Option<Decimal> {
        (rng.random_range(0..10) < 3).then(|| self.money(minor * 6 / 1000))
    }

    fn head(
        &self,
        out: &mut Vec<u8>,
        id: &str,
        kind: &str,
        minor: i64,
        time: Timestamp,
        fee: Option<Decimal>,
    ) -> io::Result<()> {
        write!(
            out,
            r#"{{"id":"{id}","type":"{kind}","merchant_id":"{}","amount":"{}","currency":"{}","event_time":"{}""#,
            self.id,
            self.money(minor),
            self.currency,
            local_time(time)
        )?;
        if let Some(fee) = fee {
            write!(out, r#","fee":"{fee}""#)?;
        }
        Ok(())
    }

    pub(crate) fn write_capture<R: Rng>(
        &mut self,
        out: &mut Vec<u8>,
        i: u64,
        time: Timestamp,
        rng: &mut R,
    ) -> io::Result<()> {
        let id = format!("C{i}");
        let minor = self.random_minor(rng);
        let fee = self.fee(minor, rng);
        self.head(out, &id, "capture", minor, time, fee)?;
        out.push(b'}');
        if self.originals.len() == RING {
            self.originals.pop_front();
        }
        self.originals.push_back(Original { id, amount: minor, remaining: minor, time });
        Ok(())
    }

    /// An original with something left to refund, or a transaction captured elsewhere.
    pub(crate) fn take_original<R: Rng>(&mut self, i: u64, time: Timestamp, rng: &mut R) -> Original {
        if let Some(pos) = self.originals.iter().position(|o| o.remaining > 0) {
            return self.originals[pos].clone();
        }
        let amount = self.random_minor(rng);
        let age = SignedDuration::from_hours(rng.random_range(1..24 * 90));
        Original { id: format!("T{i}"), amount, remaining: amount, time: time - age }
    }

    pub(crate) fn write_refund<R: Rng>(
        &mut self,
        out: &mut Vec<u8>,
        i: u64,
        time: Timestamp,
        original: Original,
        rng: &mut R,
    ) -> io::Result<()> {
        let id = format!("R{i}");
        let minor =
            if rng.random_range(0..2) == 0 { original.remaining } else { rng.random_range(1..=original.remaining) };
        let fee = self.fee(minor, rng);
        self.head(out, &id, "refund", minor, time, fee)?;
        let account = 6_222_000_000_000_000_u64 + (fxhash(&original.id) % 1_000_000_000_000);
        write!(
            out,
            r#","original_transaction_id":"{}","original_amount":"{}","original_time":"{}","payee":{{"name":"Cardholder {}","account":"{account}","bank":"BKCHCNBJ"}}}}"#,
            original.id,
            self.money(original.amount),
            local_time(original.time),
            original.id
        )?;
        if let Some(o) = self.originals.iter_mut().find(|o| o.id == original.id) {
            o.remaining -= minor;
        }
        if self.refunds.len() == RING {
            self.refunds.pop_front();
        }
        self.refunds.push_back(Refund { id, amount: minor });
        Ok(())
    }

    pub(crate) fn has_refund(&self) -> bool {
        !self.refunds.is_empty()
    }

    pub(crate) fn write_reversal(&mut self, out: &mut Vec<u8>, i: u64, time: Timestamp) -> io::Result<()> {
        let refund = self.refunds.pop_back().expect("has_refund checked");
        self.head(out, &format!("V{i}"), "refund_reversal", refund.amount, time, None)?;
        write!(out, r#","reverses":"{}"}}"#, refund.id)
    }

    pub(crate) fn write_bad<R: Rng>(&self, out: &mut Vec<u8>, i: u64, time: Timestamp, rng: &mut R) -> io::Result<()> {
        let id = format!("B{i}");
        match rng.random_range(0..4) {
            0 => write!(out, r#"{{"id":"{id}","type":"capture","merchant_id":"{}","amount":"#, self.id),
            1 => {
                write!(
                    out,
                    r#"{{"id":"{id}","type":"capture","merchant_id":"{}","amount":"1.2345","currency":"{}","event_time":"{}"}}"#,
                    self.id,
                    self.currency,
                    local_time(time)
                )
            }
            2 => write!(
                out,
                r#"{{"id":"{id}","type":"capture","merchant_id":"{}","amount":"10","currency":"XTS","event_time":"{}"}}"#,
                self.id,
                local_time(time)
            ),
            _ => write!(
                out,
                r#"{{"id":"{id}","type":"capture","merchant_id":"{}","currency":"{}","event_time":"{}"}}"#,
                self.id,
                self.currency,
                local_time(time)
            ),
        }
    }
}

/// A small stable string hash (FNV-1a) for deriving payee accounts.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
