//! IPv4 fragmentation of downstream packets longer than a session's MRU
//! with DF clear (RFC 791 §3.2, "Fragmentation"; RFC 1812 §5.2.6).
//!
//! A [`Fragments`] plan is made from the packet's header and the MRU; it
//! then writes the header of each fragment. The data of fragment `k` is
//! `data_range(k)` of the original packet's data; the worker copies it (the
//! first fragment keeps the original frame, the others get frames of their
//! own) and encapsulates each fragment like any downstream packet.
//!
//! The procedure, as RFC 791 §3.2 gives it: every fragment but the last
//! carries a multiple of 8 data bytes (NFB = (MTU - IHL*4) / 8 blocks);
//! its Fragment Offset is the original offset plus the data position in
//! 8-byte blocks; More Fragments is set on all but the last, which keeps
//! the original's (so a fragment is re-fragmented correctly); the first
//! fragment has all the options, the others only those whose "copied" flag
//! is set; Total Length and the header checksum are recomputed for each.

use core::ops::Range;

use crate::wire::ipv4;

/// Longest IPv4 header (IHL 15).
const MAX_HEADER_LEN: usize = 60;
/// RFC 791 §3.1: More Fragments, and the Fragment Offset mask.
const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;
const DONT_FRAGMENT: u16 = 0x4000;

/// How one packet is cut; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Fragments {
    /// The original header (first fragment's, options included).
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    /// The header of every later fragment: copied options only.
    later_header: [u8; MAX_HEADER_LEN],
    later_header_len: usize,
    /// Data bytes of the original packet.
    data_len: usize,
    /// Data bytes in the first fragment and in each later one but the
    /// last (multiples of 8).
    first_data: usize,
    later_data: usize,
    /// The original's Fragment Offset (8-byte blocks) and More Fragments.
    offset: u16,
    more_fragments: bool,
}

impl Fragments {
    /// A plan to cut `packet` (a whole, checked IPv4 packet) into
    /// fragments of at most `mtu` bytes, or `None` when that is impossible:
    /// DF set, a header too long to leave 8 data bytes, or an offset past
    /// what the 13-bit field holds.
    pub(crate) fn new(packet: &[u8], mtu: u16) -> Option<Fragments> {
        let mtu = usize::from(mtu);
        let first = *packet.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
        if header_len < ipv4::HEADER_LEN || total_len > packet.len() || total_len < header_len {
            return None;
        }
        let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
        if flags_offset & DONT_FRAGMENT != 0 || total_len <= mtu {
            return None;
        }
        let mut header = [0u8; MAX_HEADER_LEN];
        header[..header_len].copy_from_slice(&packet[..header_len]);
        let (later_header, later_header_len) = later_header(&header[..header_len]);
        let first_data = mtu.checked_sub(header_len)? / 8 * 8;
        let later_data = mtu.checked_sub(later_header_len)? / 8 * 8;
        if first_data == 0 || later_data == 0 {
            return None;
        }
        let data_len = total_len - header_len;
        let offset = flags_offset & OFFSET_MASK;
        // The last fragment's offset must fit 13 bits.
        if usize::from(offset) + (data_len - 1) / 8 > usize::from(OFFSET_MASK) {
            return None;
        }
        Some(Fragments {
            header,
            header_len,
            later_header,
            later_header_len,
            data_len,
            first_data,
            later_data,
            offset,
            more_fragments: flags_offset & MORE_FRAGMENTS != 0,
        })
    }

    /// How many fragments.
    pub(crate) fn count(&self) -> usize {
        1 + (self.data_len - self.first_data).div_ceil(self.later_data)
    }

    /// Where fragment `k`'s data lies in the original packet's data.
    pub(crate) fn data_range(&self, k: usize) -> Range<usize> {
        let start = if k == 0 {
            0
        } else {
            self.first_data + (k - 1) * self.later_data
        };
        let len = if k == 0 {
            self.first_data
        } else {
            self.later_data
        };
        start.min(self.data_len)..(start + len).min(self.data_len)
    }

    /// Header length of fragment `k`.
    pub(crate) fn header_len(&self, k: usize) -> usize {
        if k == 0 {
            self.header_len
        } else {
            self.later_header_len
        }
    }

    /// Header length of the original packet (where its data starts).
    pub(crate) fn original_header_len(&self) -> usize {
        self.header_len
    }

    /// Write fragment `k`'s header into `out` (at least `header_len(k)`
    /// bytes); returns the fragment's Total Length.
    pub(crate) fn write_header(&self, k: usize, out: &mut [u8]) -> Option<usize> {
        let header_len = self.header_len(k);
        let source = if k == 0 {
            &self.header
        } else {
            &self.later_header
        };
        let out = out.get_mut(..header_len)?;
        out.copy_from_slice(&source[..header_len]);
        let data = self.data_range(k);
        let total_len = header_len + data.len();
        let last = data.end == self.data_len;
        let mut flags_offset = self.offset + (data.start / 8) as u16;
        if !last || self.more_fragments {
            flags_offset |= MORE_FRAGMENTS;
        }
        out[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
        out[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        out[10..12].fill(0);
        let check = !ipv4::header_sum(out);
        out[10..12].copy_from_slice(&check.to_be_bytes());
        Some(total_len)
    }
}

/// The header of the fragments after the first: the fixed part and the
/// options whose copied flag (0x80 of the type) is set, padded with
/// End of Option List to a multiple of 4 (RFC 791 §3.1, §3.2).
fn later_header(header: &[u8]) -> ([u8; MAX_HEADER_LEN], usize) {
    const END: u8 = 0;
    const NOP: u8 = 1;
    const COPIED: u8 = 0x80;
    let mut out = [0u8; MAX_HEADER_LEN];
    out[..ipv4::HEADER_LEN].copy_from_slice(&header[..ipv4::HEADER_LEN]);
    let mut len = ipv4::HEADER_LEN;
    let mut at = ipv4::HEADER_LEN;
    while at < header.len() {
        let kind = header[at];
        let option_len = match kind {
            END => break,
            NOP => 1,
            _ => match header.get(at + 1) {
                Some(&l) if l >= 2 && at + usize::from(l) <= header.len() => usize::from(l),
                // Malformed options: keep none of the rest.
                _ => break,
            },
        };
        if kind & COPIED != 0 {
            out[len..len + option_len].copy_from_slice(&header[at..at + option_len]);
            len += option_len;
        }
        at += option_len;
    }
    // Padding bytes are already zero (End of Option List).
    let len = len.div_ceil(4) * 4;
    out[0] = 0x40 | (len / 4) as u8;
    (out, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header with `options`, total length `total`, flags/offset
    /// `flags_offset`, then `total - header` data bytes counting up.
    fn packet(options: &[u8], total: usize, flags_offset: u16) -> Vec<u8> {
        let header_len = 20 + options.len();
        let mut p = vec![0u8; total];
        p[0] = 0x40 | (header_len / 4) as u8;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        p[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        p[8] = 63;
        p[9] = 17;
        p[12..16].copy_from_slice(&[203, 0, 113, 10]);
        p[16..20].copy_from_slice(&[100, 64, 0, 1]);
        p[20..header_len].copy_from_slice(options);
        for (i, b) in p[header_len..].iter_mut().enumerate() {
            *b = i as u8;
        }
        ipv4::Packet::new_unchecked(&mut p[..]).fill_checksum();
        p
    }

    /// Cut `p` with `plan` into whole fragments.
    fn cut(p: &[u8], plan: &Fragments) -> Vec<Vec<u8>> {
        let data = &p[plan.original_header_len()..];
        (0..plan.count())
            .map(|k| {
                let mut f = vec![0u8; plan.header_len(k)];
                let total = plan.write_header(k, &mut f).unwrap();
                f.extend_from_slice(&data[plan.data_range(k)]);
                assert_eq!(f.len(), total);
                f
            })
            .collect()
    }

    #[test]
    fn a_packet_is_cut_on_8_byte_boundaries() {
        let p = packet(&[], 1478, 0);
        let plan = Fragments::new(&p, 1400).unwrap();
        let f = cut(&p, &plan);
        assert_eq!(f.len(), 2);
        // 1380 = (1400 - 20) rounded down to 8 is 1376.
        let first = ipv4::Packet::new_checked(&f[0][..]).unwrap();
        assert_eq!(first.total_len(), 1396);
        assert!(first.more_frags() && first.frag_offset() == 0);
        assert!(first.verify_checksum());
        let second = ipv4::Packet::new_checked(&f[1][..]).unwrap();
        assert_eq!(second.total_len(), 20 + 1458 - 1376);
        assert!(!second.more_frags());
        assert_eq!(second.frag_offset(), 1376);
        assert!(second.verify_checksum());
        assert_eq!(second.ident(), 0xbeef);
    }

    #[test]
    fn a_fragment_keeps_its_offset_and_more_fragments() {
        // Offset 100 blocks, MF set: a middle fragment.
        let p = packet(&[], 1020, 0x2000 | 100);
        let plan = Fragments::new(&p, 576).unwrap();
        let f = cut(&p, &plan);
        assert_eq!(f.len(), 2);
        let offsets: Vec<_> = f
            .iter()
            .map(|f| ipv4::Packet::new_checked(&f[..]).unwrap().frag_offset())
            .collect();
        assert_eq!(offsets, [800, 800 + 552]);
        assert!(f
            .iter()
            .all(|f| ipv4::Packet::new_checked(&f[..]).unwrap().more_frags()));
    }

    #[test]
    fn only_copied_options_go_into_later_fragments() {
        // NOP, Record Route (7, not copied, 7 bytes), Loose Source Route
        // (0x83, copied, 7 bytes), End: 16 bytes.
        let options = [1, 7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 10, 0, 0, 1, 0];
        let p = packet(&options, 200, 0);
        let plan = Fragments::new(&p, 100).unwrap();
        let f = cut(&p, &plan);
        assert_eq!(plan.header_len(0), 36);
        assert_eq!(plan.header_len(1), 28);
        assert_eq!(&f[1][20..27], &options[8..15]);
        assert_eq!(f[1][27], 0);
        let mut data = Vec::new();
        for (k, frag) in f.iter().enumerate() {
            let ip = ipv4::Packet::new_checked(&frag[..]).unwrap();
            assert!(ip.verify_checksum());
            assert!(frag.len() <= 100);
            assert_eq!(usize::from(ip.frag_offset()), data.len(), "fragment {k}");
            data.extend_from_slice(ip.payload());
        }
        assert_eq!(data, &p[36..]);
    }

    #[test]
    fn impossible_cuts_are_refused() {
        let p = packet(&[], 100, 0);
        assert!(Fragments::new(&p, 100).is_none(), "fits");
        assert!(Fragments::new(&p, 27).is_none(), "no 8 data bytes");
        let df = packet(&[], 100, 0x4000);
        assert!(Fragments::new(&df, 68).is_none(), "DF");
        let far = packet(&[], 100, 0x1fff);
        assert!(Fragments::new(&far, 68).is_none(), "offset overflow");
        for cut in 0..p.len() {
            let _ = Fragments::new(&p[..cut], 68);
        }
    }
}
