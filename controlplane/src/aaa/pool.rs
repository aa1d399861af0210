//! Subscriber address pools.
//!
//! A pool is one or more ranges of IPv4 addresses from the configuration,
//! written `10.64.0.10-10.64.3.250` or `10.64.0.0/22`. A CIDR range leaves
//! out its network and broadcast addresses (for prefixes up to /30): some
//! CPEs refuse an address that ends in .0 or .255 of a /24, and nobody
//! expects them to be handed out.
//!
//! Each subscriber gets a host route, so any address of a range can go to
//! any session. The pool keeps one bit per address, so a /16 costs 8 KiB and
//! the largest pool we accept ([`MAX_POOL_ADDRESSES`], 2^24 addresses) 2 MiB.
//! Allocation walks the bitmap from a cursor that only moves forward, 64
//! addresses per step: amortised O(1), and an address that was just released
//! is handed out again only after the rest of the pool has been used, so a
//! stale route or ARP entry of its previous holder has time to go.
//!
//! An address that RADIUS (Framed-IP-Address) or the users file chose is
//! [`reserved`](AddressPool::reserve): taken from the pool if it lies in a
//! range, recorded as in use if it does not. Either way no address is ever
//! held by two sessions. Running out is [`PoolError::Exhausted`]: the caller
//! logs it and fails IPCP for that session.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;
use std::collections::HashSet;

/// The most addresses one pool may hold (a /8): bounds the bitmap to 2 MiB.
pub const MAX_POOL_ADDRESSES: u64 = 1 << 24;

/// One range of addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolRange {
    first: Ipv4Addr,
    last: Ipv4Addr,
}

impl PoolRange {
    /// The addresses from `first` to `last`, both included.
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Result<Self, PoolError> {
        if u32::from(first) > u32::from(last) {
            return Err(PoolError::BadRange(format!(
                "{first}-{last}: the first address is after the last"
            )));
        }
        Ok(PoolRange { first, last })
    }

    /// The usable host addresses of `network/prefix_len`: without the
    /// network and broadcast addresses when the prefix is /30 or shorter.
    pub fn cidr(network: Ipv4Addr, prefix_len: u8) -> Result<Self, PoolError> {
        if prefix_len > 32 {
            return Err(PoolError::BadRange(format!(
                "{network}/{prefix_len}: the prefix length must be 0 to 32"
            )));
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        let base = u32::from(network);
        if base & !mask != 0 {
            return Err(PoolError::BadRange(format!(
                "{network}/{prefix_len}: host bits are set (network is {})",
                Ipv4Addr::from(base & mask)
            )));
        }
        let (mut first, mut last) = (base, base | !mask);
        if prefix_len <= 30 {
            first += 1;
            last -= 1;
        }
        Ok(PoolRange {
            first: Ipv4Addr::from(first),
            last: Ipv4Addr::from(last),
        })
    }

    /// The first address.
    pub fn first(&self) -> Ipv4Addr {
        self.first
    }

    /// The last address.
    pub fn last(&self) -> Ipv4Addr {
        self.last
    }

    /// How many addresses the range holds.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last)) - u64::from(u32::from(self.first)) + 1
    }

    /// Never: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `address` lies in the range.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&address)
    }
}

impl fmt::Display for PoolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PoolRange {
    type Err = PoolError;

    /// `A.B.C.D-E.F.G.H` (both included), `A.B.C.D/N` or one address.
    fn from_str(s: &str) -> Result<Self, PoolError> {
        let s = s.trim();
        let address = |a: &str| {
            a.trim().parse::<Ipv4Addr>().map_err(|_| {
                PoolError::BadRange(format!(
                    "{s:?}: {a:?} is not an IPv4 address (expected A.B.C.D-E.F.G.H or A.B.C.D/N)"
                ))
            })
        };
        if let Some((first, last)) = s.split_once('-') {
            PoolRange::new(address(first)?, address(last)?)
        } else if let Some((network, len)) = s.split_once('/') {
            let len = len.trim().parse::<u8>().map_err(|_| {
                PoolError::BadRange(format!("{s:?}: the prefix length must be 0 to 32"))
            })?;
            PoolRange::cidr(address(network)?, len)
        } else {
            let a = address(s)?;
            PoolRange::new(a, a)
        }
    }
}

/// What went wrong with a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// A range in the configuration is not valid; the text says why.
    BadRange(String),
    /// Two ranges of the pool share addresses.
    Overlap(PoolRange, PoolRange),
    /// The ranges hold more than [`MAX_POOL_ADDRESSES`].
    TooLarge(u64),
    /// Every address of the pool is in use.
    Exhausted,
    /// The address asked for is held by another session.
    InUse(Ipv4Addr),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::BadRange(why) => write!(f, "bad address range {why}"),
            PoolError::Overlap(a, b) => write!(f, "address ranges {a} and {b} overlap"),
            PoolError::TooLarge(n) => write!(
                f,
                "the pool holds {n} addresses, more than the {MAX_POOL_ADDRESSES} allowed"
            ),
            PoolError::Exhausted => write!(f, "address pool exhausted"),
            PoolError::InUse(a) => write!(f, "address {a} is already assigned to a session"),
        }
    }
}

impl std::error::Error for PoolError {}

/// Where a [reserved](AddressPool::reserve) address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// It lies in one of the pool's ranges and was taken from it.
    FromPool,
    /// It lies outside every range: recorded so no other session gets it.
    OutsidePool,
}

/// A set of address ranges handing out addresses: see the module docs.
#[derive(Clone)]
pub struct AddressPool {
    /// Sorted by first address; disjoint.
    ranges: Vec<PoolRange>,
    /// The index of each range's first address in `used` (prefix sums).
    offsets: Vec<u64>,
    /// One bit per address, set when in use.
    used: Vec<u64>,
    capacity: u64,
    in_use: u64,
    /// The index where the next allocation starts looking: one past the
    /// last address handed out.
    cursor: u64,
    /// Reserved addresses outside every range.
    outside: HashSet<Ipv4Addr>,
}

impl fmt::Debug for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressPool")
            .field("ranges", &self.ranges)
            .field("capacity", &self.capacity)
            .field("in_use", &self.in_use)
            .field("outside", &self.outside.len())
            .finish()
    }
}

impl AddressPool {
    /// A pool over `ranges`, all free. An empty list gives an empty pool
    /// (every allocation is [`PoolError::Exhausted`], reservations are all
    /// [`Reservation::OutsidePool`]).
    pub fn new(ranges: &[PoolRange]) -> Result<Self, PoolError> {
        let mut ranges = ranges.to_vec();
        ranges.sort_by_key(|r| r.first);
        for pair in ranges.windows(2) {
            if let [a, b] = pair {
                if b.first <= a.last {
                    return Err(PoolError::Overlap(*a, *b));
                }
            }
        }
        let mut offsets = Vec::with_capacity(ranges.len());
        let mut capacity = 0u64;
        for r in &ranges {
            offsets.push(capacity);
            capacity += r.len();
        }
        if capacity > MAX_POOL_ADDRESSES {
            return Err(PoolError::TooLarge(capacity));
        }
        let words =
            usize::try_from(capacity.div_ceil(64)).map_err(|_| PoolError::TooLarge(capacity))?;
        let mut used = vec![0u64; words];
        // The bits past the last address are marked used so allocation never
        // picks them.
        if capacity % 64 != 0 {
            if let Some(last) = used.last_mut() {
                *last = !0u64 << (capacity % 64);
            }
        }
        Ok(AddressPool {
            ranges,
            offsets,
            used,
            capacity,
            in_use: 0,
            cursor: 0,
            outside: HashSet::new(),
        })
    }

    /// A pool from range texts as [`PoolRange::from_str`] reads them.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Self, PoolError> {
        let ranges = ranges
            .iter()
            .map(|r| r.as_ref().parse())
            .collect::<Result<Vec<PoolRange>, _>>()?;
        Self::new(&ranges)
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[PoolRange] {
        &self.ranges
    }

    /// How many addresses the ranges hold.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// How many addresses of the ranges are in use.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// How many addresses of the ranges are free.
    pub fn available(&self) -> u64 {
        self.capacity - self.in_use
    }

    /// How many reserved addresses lie outside every range.
    pub fn outside_in_use(&self) -> usize {
        self.outside.len()
    }

    /// Whether `address` lies in one of the ranges.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.index_of(address).is_some()
    }

    /// Whether `address` is held by a session (in a range or outside).
    pub fn is_in_use(&self, address: Ipv4Addr) -> bool {
        match self.index_of(address) {
            Some(i) => self.bit(i),
            None => self.outside.contains(&address),
        }
    }

    /// A free address, now in use.
    pub fn allocate(&mut self) -> Result<Ipv4Addr, PoolError> {
        if self.in_use >= self.capacity {
            return Err(PoolError::Exhausted);
        }
        let words = self.used.len();
        let start_word = (self.cursor / 64) as usize % words.max(1);
        // Bits below the cursor in its own word count as used on the first
        // pass and are looked at last, on the wrap-around.
        let below_cursor = (1u64 << (self.cursor % 64)) - 1;
        for step in 0..=words {
            let w = (start_word + step) % words;
            let mut word = self.used[w];
            if step == 0 {
                word |= below_cursor;
            }
            if word != u64::MAX {
                let bit = (!word).trailing_zeros();
                self.used[w] |= 1 << bit;
                self.in_use += 1;
                let index = (w as u64) * 64 + u64::from(bit);
                self.cursor = (index + 1) % self.capacity;
                return self.address_at(index).ok_or(PoolError::Exhausted);
            }
        }
        // in_use < capacity says a bit is free; not finding one is a bug in
        // the bookkeeping, answered as exhaustion rather than a panic.
        Err(PoolError::Exhausted)
    }

    /// Marks `address` in use for a session that was given it by RADIUS or
    /// the users file. [`PoolError::InUse`] if another session holds it.
    pub fn reserve(&mut self, address: Ipv4Addr) -> Result<Reservation, PoolError> {
        match self.index_of(address) {
            Some(i) => {
                if self.bit(i) {
                    return Err(PoolError::InUse(address));
                }
                self.set_bit(i, true);
                self.in_use += 1;
                Ok(Reservation::FromPool)
            }
            None => {
                if self.outside.insert(address) {
                    Ok(Reservation::OutsidePool)
                } else {
                    Err(PoolError::InUse(address))
                }
            }
        }
    }

    /// Gives `address` back when its session ends. False if it was not in
    /// use (a double release is harmless).
    pub fn release(&mut self, address: Ipv4Addr) -> bool {
        match self.index_of(address) {
            Some(i) => {
                if !self.bit(i) {
                    return false;
                }
                self.set_bit(i, false);
                self.in_use -= 1;
                true
            }
            None => self.outside.remove(&address),
        }
    }

    fn index_of(&self, address: Ipv4Addr) -> Option<u64> {
        // The last range that starts at or before the address.
        let k = self.ranges.partition_point(|r| r.first <= address);
        let r = self.ranges.get(k.checked_sub(1)?)?;
        if !r.contains(address) {
            return None;
        }
        let offset = self.offsets.get(k - 1)?;
        Some(offset + u64::from(u32::from(address) - u32::from(r.first)))
    }

    fn address_at(&self, index: u64) -> Option<Ipv4Addr> {
        let k = self
            .offsets
            .partition_point(|&o| o <= index)
            .checked_sub(1)?;
        let r = self.ranges.get(k)?;
        let within = u32::try_from(index - self.offsets.get(k)?).ok()?;
        Some(Ipv4Addr::from(u32::from(r.first).checked_add(within)?))
    }

    fn bit(&self, index: u64) -> bool {
        let (w, b) = ((index / 64) as usize, index % 64);
        self.used.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    fn set_bit(&mut self, index: u64, on: bool) {
        let (w, b) = ((index / 64) as usize, index % 64);
        if let Some(word) = self.used.get_mut(w) {
            if on {
                *word |= 1 << b;
            } else {
                *word &= !(1 << b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_cidr_and_single_addresses() {
        let r: PoolRange = "10.0.0.10 - 10.0.0.20".parse().unwrap();
        assert_eq!(
            (r.first(), r.last(), r.len()),
            (ip("10.0.0.10"), ip("10.0.0.20"), 11)
        );
        let r: PoolRange = "10.1.0.0/24".parse().unwrap();
        assert_eq!(
            (r.first(), r.last(), r.len()),
            (ip("10.1.0.1"), ip("10.1.0.254"), 254)
        );
        let r: PoolRange = "10.1.0.0/31".parse().unwrap();
        assert_eq!(r.len(), 2);
        let r: PoolRange = "10.1.0.7/32".parse().unwrap();
        assert_eq!((r.first(), r.len()), (ip("10.1.0.7"), 1));
        let r: PoolRange = "10.2.0.1".parse().unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (text, wanted) in [
            ("10.0.0.20-10.0.0.10", "after the last"),
            ("10.0.0.1/24", "host bits"),
            ("10.0.0.0/33", "0 to 32"),
            ("10.0.0.0/x", "0 to 32"),
            ("10.0.0-10.0.0.9", "not an IPv4 address"),
            ("", "not an IPv4 address"),
        ] {
            let err = text.parse::<PoolRange>().unwrap_err().to_string();
            assert!(err.contains(wanted), "{text:?}: {err}");
        }
        let err = AddressPool::parse(&["10.0.0.0/24", "10.0.0.200-10.0.1.5"]).unwrap_err();
        assert!(matches!(err, PoolError::Overlap(..)), "{err}");
        let err = AddressPool::parse(&["0.0.0.0/0"]).unwrap_err();
        assert!(matches!(err, PoolError::TooLarge(_)), "{err}");
        AddressPool::parse(&["10.0.0.0/8"]).unwrap();
    }

    #[test]
    fn hands_out_every_address_once_then_reports_exhaustion() {
        let mut pool = AddressPool::parse(&["10.0.0.1-10.0.0.70", "192.0.2.0/29"]).unwrap();
        assert_eq!(pool.capacity(), 76);
        let mut seen = HashSet::new();
        for _ in 0..76 {
            let a = pool.allocate().unwrap();
            assert!(pool.contains(a), "{a}");
            assert!(seen.insert(a), "{a} given twice");
        }
        assert_eq!(pool.allocate(), Err(PoolError::Exhausted));
        assert_eq!(pool.available(), 0);
        assert!(pool.release(ip("192.0.2.3")));
        assert!(!pool.release(ip("192.0.2.3")));
        assert_eq!(pool.allocate(), Ok(ip("192.0.2.3")));
    }

    #[test]
    fn an_empty_pool_is_exhausted_and_records_reservations() {
        let mut pool = AddressPool::new(&[]).unwrap();
        assert_eq!(pool.allocate(), Err(PoolError::Exhausted));
        assert_eq!(pool.reserve(ip("10.9.9.9")), Ok(Reservation::OutsidePool));
        assert_eq!(
            pool.reserve(ip("10.9.9.9")),
            Err(PoolError::InUse(ip("10.9.9.9")))
        );
        assert!(pool.release(ip("10.9.9.9")));
    }

    #[test]
    fn a_reserved_address_is_never_allocated() {
        let mut pool = AddressPool::parse(&["10.0.0.1-10.0.0.4"]).unwrap();
        assert_eq!(pool.reserve(ip("10.0.0.2")), Ok(Reservation::FromPool));
        assert_eq!(
            pool.reserve(ip("10.0.0.2")),
            Err(PoolError::InUse(ip("10.0.0.2")))
        );
        let got: HashSet<_> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        assert!(!got.contains(&ip("10.0.0.2")));
        assert_eq!(pool.allocate(), Err(PoolError::Exhausted));
        assert_eq!(
            pool.reserve(ip("10.0.0.3")),
            Err(PoolError::InUse(ip("10.0.0.3")))
        );
    }

    #[test]
    fn a_released_address_comes_back_last() {
        let mut pool = AddressPool::parse(&["10.0.0.0/24"]).unwrap();
        let first = pool.allocate().unwrap();
        pool.release(first);
        let next = pool.allocate().unwrap();
        assert_ne!(first, next);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate,
        Reserve(u8),
        Release(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Allocate),
            1 => any::<u8>().prop_map(Op::Reserve),
            2 => any::<u8>().prop_map(Op::Release),
        ]
    }

    proptest! {
        /// Whatever the order of allocations, reservations (inside and
        /// outside the ranges) and releases, no address is held twice and
        /// the counts add up.
        #[test]
        fn never_gives_an_address_twice(ops in proptest::collection::vec(op(), 0..400)) {
            // 10.0.0.1-10.0.0.100 and 10.0.0.150-10.0.0.170; reservations
            // pick anything in 10.0.0.0/24, so some fall outside.
            let mut pool = AddressPool::parse(&["10.0.0.150-10.0.0.170", "10.0.0.1-10.0.0.100"]).unwrap();
            let mut held: HashSet<Ipv4Addr> = HashSet::new();
            for op in ops {
                match op {
                    Op::Allocate => match pool.allocate() {
                        Ok(a) => {
                            prop_assert!(pool.contains(a));
                            prop_assert!(held.insert(a), "{} given twice", a);
                        }
                        Err(e) => {
                            prop_assert_eq!(e, PoolError::Exhausted);
                            prop_assert_eq!(pool.available(), 0);
                        }
                    },
                    Op::Reserve(n) => {
                        let a = Ipv4Addr::new(10, 0, 0, n);
                        match pool.reserve(a) {
                            Ok(_) => prop_assert!(held.insert(a), "{} reserved twice", a),
                            Err(e) => {
                                prop_assert_eq!(e, PoolError::InUse(a));
                                prop_assert!(held.contains(&a));
                            }
                        }
                    }
                    Op::Release(n) => {
                        let a = Ipv4Addr::new(10, 0, 0, n);
                        prop_assert_eq!(pool.release(a), held.remove(&a));
                    }
                }
                let inside = held.iter().filter(|a| pool.contains(**a)).count() as u64;
                prop_assert_eq!(pool.in_use(), inside);
                prop_assert_eq!(pool.outside_in_use() as u64, held.len() as u64 - inside);
            }
        }
    }
}
