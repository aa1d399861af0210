//! tshark, an implementation that is not ours, dissects every message type
//! we emit: no malformed packet, no expert error (nor warning, but the one
//! noted below), and the fields it decodes are the ones we meant.
//!
//! Every frame is built with our emitters only (`Repr::emit` of
//! `dataplane::wire`): Ethernet/IPv4/UDP around L2TP, Ethernet around
//! PPPoE and ARP. They go into one pcap per test, and tshark's field output
//! for each frame is compared with what its representation says (most
//! expectations are derived from the `Repr`, so adding an AVP or option to
//! a message adds its checks).
//!
//! What tshark 4.0 cannot check, and what the test does instead:
//! * a hidden AVP (RFC 2661 §4.3) shows only its M, H and Length, and its
//!   label; the value is not revealed (`l2tp.shared_secret` serves L2TPv3
//!   digests only). The label is checked; the value is covered by the
//!   hand-computed vector in `wire::avp`.
//! * it has no dissector for the HA vendor (43): a vendor AVP shows its
//!   vendor id, type and length, and a "Vendor-Specific AVP data" warning
//!   (the only warning allowed) that spans no bytes. Its Info column names
//!   an HA message by the IETF message of the same number, a slip of the
//!   dissector; no check reads the Info column.
//! * a PPPoE tag with an empty value is not shown at all (the Payload
//!   Length still counts it).
//!
//! tshark is a test dependency (CI installs it). Without it the test fails:
//! a dissection check that silently passes is worse than none. Set
//! `KEEP_PCAP=1` to keep the pcaps for a look with wireshark.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dataplane::wire::control::{
    Avp, AvpEntry, Context, ControlMessage, MessageType, OffloadOperation, SwitchoverAction,
    SwitchoverType, HA_VENDOR_ID,
};
use dataplane::wire::ppp_cp::{
    self, AuthProtocol, ChapAlgorithm, ConfigOption, CpData, CpRepr, IpcpOption, IpcpRepr,
    Ipv6cpOption, Ipv6cpRepr, LcpOption, LcpRepr,
};
use dataplane::wire::pppoe::{self, DiscoveryRepr, Tag};
use dataplane::wire::{arp, chap, ethernet, ipv4, l2tp, pap, ppp, udp, Result};
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// The tunnel's shared secret for the hidden AVPs (RFC 2661 §4.3).
const SECRET: &[u8] = b"lab-tunnel-secret";

const CTX: Context<'static> = Context {
    secret: Some(SECRET),
    ha_vendor_id: HA_VENDOR_ID,
};

const LAC_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0, 0x01]);
const LNS_MAC: ethernet::Address = ethernet::Address([0x02, 0, 0, 0, 0, 0x02]);
const LAC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LNS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The subscriber's PPPoE session: PADS assigns it, PADT ends it, the
/// session frames carry it.
const PPPOE_SESSION_ID: u16 = 0x0011;

// ---------------------------------------------------------------------------
// What we expect tshark to show.

/// One occurrence of a tshark field as we meant it.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// An integer or boolean field; tshark prints these in decimal or
    /// `0x` hex depending on the field's base, both are accepted.
    Num(u64),
    /// A string field, exactly.
    Text(String),
    /// A byte field (tshark prints hex, sometimes with colons).
    Bytes(Vec<u8>),
}

impl Want {
    fn matches(&self, shown: &str) -> bool {
        match self {
            Want::Num(n) => parse_number(shown) == Some(*n),
            Want::Text(t) => shown == t,
            Want::Bytes(b) => shown.replace(':', "").eq_ignore_ascii_case(&hex(b)),
        }
    }
}

fn parse_number(shown: &str) -> Option<u64> {
    match shown {
        "True" => Some(1),
        "False" => Some(0),
        _ => match shown.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => shown.parse().ok(),
        },
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A frame, what it is, and the tshark fields with every occurrence we
/// expect in it, in order. A field listed with no occurrences must be absent.
#[derive(Debug)]
struct Frame {
    what: String,
    bytes: Vec<u8>,
    expect: Vec<(&'static str, Vec<Want>)>,
    /// Lines of tshark's packet tree (`-V`) that must end with these, for
    /// what only shows in a label (hidden AVPs).
    tree_lines: Vec<String>,
}

impl Frame {
    fn new(what: impl Into<String>, bytes: Vec<u8>) -> Self {
        Frame {
            what: what.into(),
            bytes,
            expect: Vec::new(),
            tree_lines: Vec::new(),
        }
    }

    /// Some line of this frame's packet tree ends with `line`.
    fn tree_line(mut self, line: impl Into<String>) -> Self {
        self.tree_lines.push(line.into());
        self
    }

    /// Append an occurrence of `field`.
    fn push(&mut self, field: &'static str, want: Want) {
        match self.expect.iter_mut().find(|(f, _)| *f == field) {
            Some((_, wants)) => wants.push(want),
            None => self.expect.push((field, vec![want])),
        }
    }

    fn num(mut self, field: &'static str, n: impl Into<u64>) -> Self {
        self.push(field, Want::Num(n.into()));
        self
    }

    fn text(mut self, field: &'static str, t: &str) -> Self {
        self.push(field, Want::Text(t.to_string()));
        self
    }

    fn bytes(mut self, field: &'static str, b: &[u8]) -> Self {
        self.push(field, Want::Bytes(b.to_vec()));
        self
    }

    /// `field` must not appear in this frame.
    fn absent(mut self, field: &'static str) -> Self {
        if !self.expect.iter().any(|(f, _)| *f == field) {
            self.expect.push((field, Vec::new()));
        }
        self
    }
}

// ---------------------------------------------------------------------------
// Building frames with our emitters.

/// The bytes `emit` writes into a buffer of `buffer_len` bytes, which it
/// must fill exactly (the codec contract).
fn emitted(
    what: &str,
    buffer_len: usize,
    emit: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Vec<u8> {
    let mut buf = vec![0; buffer_len];
    assert_eq!(
        emit(&mut buf),
        Ok(buffer_len),
        "{what}: emit writes buffer_len()"
    );
    buf
}

/// Ethernet/IPv4/UDP (port 1701 both ways, checksum filled) around an L2TP
/// packet, from the LAC to the LNS or back.
fn over_udp(l2tp: &[u8], from_lac: bool) -> Vec<u8> {
    let (src_mac, dst_mac, src_ip, dst_ip) = if from_lac {
        (LAC_MAC, LNS_MAC, LAC_IP, LNS_IP)
    } else {
        (LNS_MAC, LAC_MAC, LNS_IP, LAC_IP)
    };
    let eth = ethernet::Repr {
        dst_addr: dst_mac,
        src_addr: src_mac,
        outer_tag: None,
        inner_tag: None,
        ethertype: ethernet::EtherType::Ipv4,
    };
    let udp = udp::Repr {
        src_port: l2tp::UDP_PORT,
        dst_port: l2tp::UDP_PORT,
        payload_len: l2tp.len(),
    };
    let ip = ipv4::Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp.total_len(),
    };
    let mut frame = vec![0; eth.buffer_len() + ip.total_len()];
    let mut at = eth.emit(&mut frame).unwrap();
    at += ip.emit(&mut frame[at..]).unwrap();
    let udp_at = at;
    at += udp.emit(&mut frame[at..]).unwrap();
    frame[at..].copy_from_slice(l2tp);
    udp::Packet::new_unchecked(&mut frame[udp_at..]).fill_checksum(src_ip, dst_ip);
    frame
}

/// A control message over UDP, with the expectations its representation
/// implies (see [`expect_control`]).
fn control(what: &str, message: &ControlMessage, from_lac: bool) -> Frame {
    let l2tp = emitted(what, message.buffer_len(), |buf| message.emit(buf, &CTX));
    expect_control(Frame::new(what, over_udp(&l2tp, from_lac)), message)
}

/// The header fields and, per AVP, the M/H bits, vendor id, attribute type,
/// length and (for the IETF AVPs tshark knows) the value.
fn expect_control(frame: Frame, m: &ControlMessage) -> Frame {
    let mut f = frame
        .num("l2tp.type", 1u8)
        .num("l2tp.length_bit", 1u8)
        .num("l2tp.seq_bit", 1u8)
        .num("l2tp.offset_bit", 0u8)
        .num("l2tp.priority", 0u8)
        .num("l2tp.version", 2u8)
        .num("l2tp.length", m.buffer_len() as u64)
        .num("l2tp.tunnel", m.tunnel_id)
        .num("l2tp.session", m.session_id)
        .num("l2tp.Ns", m.ns)
        .num("l2tp.Nr", m.nr);
    let Some(message_type) = m.message_type else {
        return f
            .absent("l2tp.avp.type")
            .absent("l2tp.avp.message_type")
            .num("l2tp.zero_length_body_message", 1u8);
    };
    // The Message Type AVP (RFC 2661 §4.4.1): vendor 0 for the IETF
    // messages, the HA vendor id for ours (DESIGN.md §3).
    let (vendor, value) = message_type.code(HA_VENDOR_ID);
    f = f
        .num("l2tp.avp.mandatory", m.message_type_mandatory)
        .num("l2tp.avp.hidden", 0u8)
        .num("l2tp.avp.length", 8u8)
        .num("l2tp.avp.vendor_id", vendor)
        .num("l2tp.avp.type", 0u8);
    if vendor == 0 {
        f = f.num("l2tp.avp.message_type", value);
    } else {
        // An HA message: tshark shows the Message Type AVP as a vendor AVP
        // of type 0 with undecoded data, which is right. Its Info column is
        // not: it names the message by the value alone, ignoring the
        // vendor id (LSORQ = vendor 43 type 1 shows as "SCCRQ"), a display
        // slip of the L2TP dissector that leaves every field correct, so
        // nothing here reads the Info column.
        f = f
            .num("l2tp.vendor_specific_avp_data", 1u8)
            .tree_line(format!("({vendor}) AVP Type 0"));
    }
    for entry in &m.avps {
        f = expect_avp(f, entry);
    }
    f
}

fn expect_avp(mut f: Frame, entry: &AvpEntry) -> Frame {
    let (vendor, attribute) = entry.avp.attribute(HA_VENDOR_ID);
    f = f
        .num("l2tp.avp.mandatory", entry.mandatory)
        .num("l2tp.avp.hidden", entry.hidden)
        .num("l2tp.avp.length", entry.wire_len() as u64)
        .num("l2tp.avp.vendor_id", vendor)
        .num("l2tp.avp.type", attribute);
    if entry.hidden {
        // tshark 4.0 shows a hidden AVP's M, H and Length, names it in the
        // label, and stops: no Vendor ID or Attribute Type field, no value
        // (it has no code to reveal it; `l2tp.shared_secret` only serves
        // L2TPv3 digests). The label still shows it read the vendor and
        // type we meant. A vendor AVP's label names the vendor.
        f.expect.iter_mut().for_each(|(field, wants)| {
            if matches!(*field, "l2tp.avp.vendor_id" | "l2tp.avp.type") {
                wants.pop();
            }
        });
        return match (vendor, ietf_avp_label(attribute)) {
            (0, Some(label)) => f.tree_line(format!("{label} AVP")),
            (0, None) => f,
            (vendor, _) => f.tree_line(format!("({vendor}) AVP Type {attribute}")),
        };
    }
    if vendor != 0 {
        // tshark knows no HA vendor: it shows the vendor id and the type,
        // and flags the value "Vendor-Specific AVP data" (an Undecoded
        // warning that spans no bytes, so the value itself cannot be
        // compared; the Length above, and the AVPs after it lining up,
        // check its size).
        return f
            .tree_line(format!("({vendor}) AVP Type {attribute}"))
            .num("l2tp.vendor_specific_avp_data", 1u8);
    }
    use Avp::*;
    match &entry.avp {
        ResultCode {
            result,
            error,
            message,
        } => {
            f = f.num("l2tp.result_code", *result);
            if let Some(error) = error {
                f = f.num("l2tp.avp.error_code", *error);
                if !message.is_empty() {
                    f = f.text("l2tp.avp.error_message", &String::from_utf8_lossy(message));
                }
            }
            f
        }
        ProtocolVersion { version, revision } => f
            .num("l2tp.avp.protocol_version", *version)
            .num("l2tp.avp.protocol_revision", *revision),
        // RFC 2661 §4.4.3: bit 0x1 synchronous, 0x2 asynchronous.
        FramingCapabilities(bits) => f
            .num("l2tp.avp.async_framing_supported", bits & 2 != 0)
            .num("l2tp.avp.sync_framing_supported", bits & 1 != 0),
        // RFC 2661 §4.4.3: bit 0x1 digital, 0x2 analog.
        BearerCapabilities(bits) => f
            .num("l2tp.avp.analog_access_supported", bits & 2 != 0)
            .num("l2tp.avp.digital_access_supported", bits & 1 != 0),
        TieBreaker(v) => f.num("l2tp.tie_breaker", u64::from_be_bytes(*v)),
        FirmwareRevision(v) => f.num("l2tp.avp.firmware_revision", *v),
        HostName(v) => f.text("l2tp.avp.host_name", &String::from_utf8_lossy(v)),
        VendorName(v) => f.text("l2tp.avp.vendor_name", &String::from_utf8_lossy(v)),
        AssignedTunnelId(v) => f.num("l2tp.avp.assigned_tunnel_id", *v),
        ReceiveWindowSize(v) => f.num("l2tp.avp.receive_window_size", *v),
        Challenge(v) => f.bytes("l2tp.avp.chap_challenge", v),
        Q931CauseCode {
            cause,
            message,
            advisory,
        } => {
            f = f
                .num("l2tp.avp.cause_code", *cause)
                .num("l2tp.avp.cause_msg", *message);
            if !advisory.is_empty() {
                f = f.text("l2tp.avp.advisory_msg", &String::from_utf8_lossy(advisory));
            }
            f
        }
        ChallengeResponse(v) => f.bytes("l2tp.avp.chap_challenge_response", v),
        AssignedSessionId(v) => f.num("l2tp.avp.assigned_session_id", *v),
        CallSerialNumber(v) => f.num("l2tp.avp.call_serial_number", *v),
        MinimumBps(v) => f.num("l2tp.avp.minimum_bps", *v),
        MaximumBps(v) => f.num("l2tp.avp.maximum_bps", *v),
        // RFC 2661 §4.4.5: bit 0x1 digital, 0x2 analog.
        BearerType(bits) => f
            .num("l2tp.avp.analog_bearer_type", bits & 2 != 0)
            .num("l2tp.avp.digital_bearer_type", bits & 1 != 0),
        // RFC 2661 §4.4.5: bit 0x1 synchronous, 0x2 asynchronous.
        FramingType(bits) => f
            .num("l2tp.avp.async_framing_type", bits & 2 != 0)
            .num("l2tp.avp.sync_framing_type", bits & 1 != 0),
        CalledNumber(v) => f.text("l2tp.avp.called_number", &String::from_utf8_lossy(v)),
        CallingNumber(v) => f.text("l2tp.avp.calling_number", &String::from_utf8_lossy(v)),
        SubAddress(v) => f.text("l2tp.avp.sub_address", &String::from_utf8_lossy(v)),
        TxConnectSpeed(v) => f.num("l2tp.avp.connect_speed", *v),
        PhysicalChannelId(v) => f.num("l2tp.avp.physical_channel", *v),
        // tshark dissects the options in these three too.
        InitialReceivedLcpConfReq(v) => {
            expect_lcp_options(f.bytes("l2tp.avp.initial_received_lcp_confreq", v), v)
        }
        LastSentLcpConfReq(v) => {
            expect_lcp_options(f.bytes("l2tp.avp.last_sent_lcp_confreq", v), v)
        }
        LastReceivedLcpConfReq(v) => {
            expect_lcp_options(f.bytes("l2tp.avp.last_received_lcp_confreq", v), v)
        }
        ProxyAuthenType(v) => f.num("l2tp.avp.proxy_authen_type", *v),
        ProxyAuthenName(v) => f.text("l2tp.avp.proxy_authen_name", &String::from_utf8_lossy(v)),
        ProxyAuthenChallenge(v) => f.bytes("l2tp.avp.proxy_authen_challenge", v),
        ProxyAuthenId(v) => f.num("l2tp.avp.proxy_authen_id", *v),
        ProxyAuthenResponse(v) => f.bytes("l2tp.avp.proxy_authen_response", v),
        CallErrors {
            crc,
            framing,
            hardware_overruns,
            buffer_overruns,
            timeouts,
            alignment,
        } => f
            .num("l2tp.avp.crc_errors", *crc)
            .num("l2tp.avp.framing_errors", *framing)
            .num("l2tp.avp.hardware_overruns", *hardware_overruns)
            .num("l2tp.avp.buffer_overruns", *buffer_overruns)
            .num("l2tp.avp.time_out_errors", *timeouts)
            .num("l2tp.avp.alignment_errors", *alignment),
        Accm { send, receive } => f
            .num("l2tp.avp.send_accm", *send)
            .num("l2tp.avp.receive_accm", *receive),
        RandomVector(v) => f.bytes("l2tp.avp.random_vector", v),
        PrivateGroupId(v) => f.bytes("l2tp.avp.private_group_id", v),
        RxConnectSpeed(v) => f.num("l2tp.avp.rx_connect_speed", *v),
        _ => f,
    }
}

/// The options of a proxy LCP AVP, which were built from typed options.
fn expect_lcp_options(mut f: Frame, options: &[u8]) -> Frame {
    for option in ppp_cp::parse_options::<LcpOption<'_>>(options).unwrap() {
        f = option.expect(f.num(LcpOption::OPTION_TYPE, option.kind()));
    }
    f
}

/// tshark's label of the IETF AVPs we hide (RFC 2661 §4.4: the ones that
/// "may be hidden").
fn ietf_avp_label(attribute: u16) -> Option<&'static str> {
    Some(match attribute {
        9 => "Assigned Tunnel ID",
        11 => "Challenge",
        30 => "Proxy Authen Name",
        33 => "Proxy Authen Response",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Running tshark.

/// A scratch directory removed when the test ends, pass or fail.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_PCAP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn write_pcap(path: &Path, frames: &[Frame]) {
    // PcapWriter's default header: microsecond timestamps, link type
    // Ethernet.
    let mut writer = PcapWriter::new(File::create(path).unwrap()).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.bytes.len()).unwrap();
        let packet = PcapPacket::new(Duration::from_millis(i as u64), len, &frame.bytes);
        writer.write_packet(&packet).unwrap();
    }
}

/// Run tshark on `pcap` with L2TP decoding forced on UDP 1701 and the
/// tunnel secret configured; returns stdout. Fails the test, saying what to
/// install, when tshark is missing.
fn tshark(pcap: &Path, args: &[&str]) -> String {
    let secret = format!("l2tp.shared_secret:{}", String::from_utf8_lossy(SECRET));
    let output = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "udp.port==1701,l2tp", "-o", &secret])
        .args(args)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "tshark is not installed, and this test checks our packets against its \
             dissectors: install it (Debian/Ubuntu: `apt-get install tshark`) and rerun"
        ),
        Err(e) => panic!("cannot run tshark: {e}"),
    };
    assert!(
        output.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Frames tshark finds malformed or gives an expert error, with its expert
/// messages: the display filter of the issue, verbatim.
fn malformed_or_error(pcap: &Path) -> Vec<(usize, String)> {
    let out = tshark(
        pcap,
        &[
            "-Y",
            "_ws.malformed || _ws.expert.severity >= error",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ],
    );
    out.lines()
        .map(|line| {
            let (n, messages) = line.split_once('\t').unwrap_or((line, ""));
            (n.parse().unwrap_or(0), messages.to_string())
        })
        .collect()
}

/// epan/expert.h: PI_WARN.
const PI_WARN: u64 = 0x0060_0000;

/// Every expert info of every frame: (frame number, severity, message).
fn expert_infos(pcap: &Path) -> Vec<(usize, u64, String)> {
    let out = tshark(
        pcap,
        &[
            "-Y",
            "_ws.expert",
            "-T",
            "fields",
            "-E",
            "aggregator=|",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.severity",
            "-e",
            "_ws.expert.message",
        ],
    );
    let mut infos = Vec::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let n = cols.first().and_then(|n| n.parse().ok()).unwrap_or(0);
        let severities = cols.get(1).map_or("", |c| c).split('|');
        let messages = cols.get(2).map_or("", |c| c).split('|');
        for (severity, message) in severities.zip(messages) {
            let severity = parse_number(severity).unwrap_or(u64::MAX);
            infos.push((n, severity, message.to_string()));
        }
    }
    infos
}

/// Write the frames, have tshark dissect them, and check every frame.
fn dissect_and_check(name: &str, frames: &[Frame]) {
    let dir = ScratchDir::new(&format!("dataplane-tshark-{name}"));
    let pcap = dir.0.join(format!("{name}.pcap"));
    write_pcap(&pcap, frames);
    let keep = if std::env::var_os("KEEP_PCAP").is_some() {
        format!(" (kept: {})", pcap.display())
    } else {
        " (set KEEP_PCAP=1 to keep the pcap)".to_string()
    };

    // (a) Nothing malformed, no expert error.
    let bad = malformed_or_error(&pcap);
    let describe = |n: usize| {
        frames
            .get(n.wrapping_sub(1))
            .map_or("?", |f| f.what.as_str())
    };
    let bad: Vec<String> = bad
        .iter()
        .map(|(n, messages)| format!("frame {n} ({}): {messages}", describe(*n)))
        .collect();
    assert!(
        bad.is_empty(),
        "tshark finds malformed packets or expert errors{keep}:\n{}",
        bad.join("\n")
    );
    // No warning either, but the one tshark gives every vendor AVP it has
    // no dissector for (ours, vendor 43), which says nothing about us.
    let warnings: Vec<String> = expert_infos(&pcap)
        .into_iter()
        .filter(|(_, severity, message)| {
            *severity >= PI_WARN && message != "Vendor-Specific AVP data"
        })
        .map(|(n, _, message)| format!("frame {n} ({}): {message}", describe(n)))
        .collect();
    assert!(
        warnings.is_empty(),
        "tshark warns about our packets{keep}:\n{}",
        warnings.join("\n")
    );

    // (b) The fields, all frames in one run.
    let fields: Vec<&str> = frames
        .iter()
        .flat_map(|f| f.expect.iter().map(|(field, _)| *field))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut args = vec!["-T", "fields", "-E", "aggregator=|", "-E", "occurrence=a"];
    args.extend(["-e", "frame.number"]);
    for field in &fields {
        args.extend(["-e", field]);
    }
    let out = tshark(&pcap, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), frames.len(), "tshark shows every frame{keep}");
    let mut failures = Vec::new();
    for (i, (frame, line)) in frames.iter().zip(&lines).enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        for (field, wants) in &frame.expect {
            let col = 1 + fields.iter().position(|f| f == field).unwrap();
            let shown: Vec<&str> = match cols.get(col) {
                None | Some(&"") => Vec::new(),
                Some(v) => v.split('|').collect(),
            };
            let ok =
                shown.len() == wants.len() && wants.iter().zip(&shown).all(|(w, s)| w.matches(s));
            if !ok {
                failures.push(format!(
                    "frame {} ({}): {field} shows {shown:?}, we meant {wants:?}",
                    i + 1,
                    frame.what
                ));
            }
        }
    }

    // (c) Labels of the packet tree, for the frames that need them.
    if frames.iter().any(|f| !f.tree_lines.is_empty()) {
        let tree = tshark(&pcap, &["-V"]);
        // Each frame's tree starts with "Frame N: " at the start of a line.
        let mut per_frame: Vec<Vec<&str>> = Vec::new();
        for line in tree.lines() {
            if line.starts_with("Frame ") {
                per_frame.push(Vec::new());
            }
            if let Some(lines) = per_frame.last_mut() {
                lines.push(line.trim());
            }
        }
        assert_eq!(
            per_frame.len(),
            frames.len(),
            "tshark -V shows every frame{keep}"
        );
        for (i, (frame, tree)) in frames.iter().zip(&per_frame).enumerate() {
            let mut rest = &tree[..];
            // In order: each expected line after the previous one.
            for want in &frame.tree_lines {
                match rest.iter().position(|l| l.ends_with(want.as_str())) {
                    Some(at) => rest = &rest[at + 1..],
                    None => failures.push(format!(
                        "frame {} ({}): no tree line ending with {want:?} (in order)",
                        i + 1,
                        frame.what
                    )),
                }
            }
        }
    }

    assert!(
        failures.is_empty(),
        "tshark decodes fields differently from what we meant{keep}:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The messages.

fn m(avp: Avp) -> AvpEntry {
    AvpEntry::mandatory(avp)
}

fn o(avp: Avp) -> AvpEntry {
    AvpEntry::optional(avp)
}

fn with_seq(mut message: ControlMessage, ns: u16, nr: u16) -> ControlMessage {
    message.ns = ns;
    message.nr = nr;
    message
}

/// Every RFC 2661 control message type we emit, plus the ZLB.
fn rfc2661_control_messages() -> Vec<Frame> {
    let sccrq = with_seq(
        ControlMessage::new(MessageType::Sccrq, 0, 0)
            .with(m(Avp::ProtocolVersion {
                version: 1,
                revision: 0,
            }))
            .with(m(Avp::FramingCapabilities(3)))
            .with(m(Avp::BearerCapabilities(3)))
            .with(o(Avp::TieBreaker(*b"\x01\x23\x45\x67\x89\xab\xcd\xef")))
            .with(o(Avp::FirmwareRevision(0x0102)))
            .with(m(Avp::HostName(b"lac-1.example".to_vec())))
            .with(o(Avp::VendorName(b"dataplane".to_vec())))
            .with(m(Avp::AssignedTunnelId(0x1234)))
            .with(m(Avp::ReceiveWindowSize(16)))
            .with(m(Avp::Challenge(b"0123456789abcdef".to_vec()))),
        0,
        0,
    );
    let sccrp = with_seq(
        ControlMessage::new(MessageType::Sccrp, 0x1234, 0)
            .with(m(Avp::ProtocolVersion {
                version: 1,
                revision: 0,
            }))
            .with(m(Avp::FramingCapabilities(1)))
            .with(m(Avp::BearerCapabilities(0)))
            .with(m(Avp::HostName(b"lns-1.example".to_vec())))
            .with(m(Avp::AssignedTunnelId(0x5678)))
            .with(m(Avp::ReceiveWindowSize(8)))
            .with(m(Avp::ChallengeResponse(
                *b"\x10\x32\x54\x76\x98\xba\xdc\xfe\x01\x23\x45\x67\x89\xab\xcd\xef",
            ))),
        0,
        1,
    );
    let scccn = with_seq(
        ControlMessage::new(MessageType::Scccn, 0x5678, 0).with(m(Avp::ChallengeResponse(
            *b"\xfe\xdc\xba\x98\x76\x54\x32\x10\xef\xcd\xab\x89\x67\x45\x23\x01",
        ))),
        1,
        1,
    );
    let zlb = ControlMessage::zlb(0x1234, 0, 1, 2);
    let hello = with_seq(ControlMessage::new(MessageType::Hello, 0x5678, 0), 2, 1);
    let icrq = with_seq(
        ControlMessage::new(MessageType::Icrq, 0x5678, 0)
            .with(m(Avp::AssignedSessionId(0x0101)))
            .with(m(Avp::CallSerialNumber(7)))
            .with(o(Avp::MinimumBps(1_000_000)))
            .with(o(Avp::MaximumBps(100_000_000)))
            .with(m(Avp::BearerType(2)))
            .with(m(Avp::FramingType(1)))
            .with(m(Avp::CalledNumber(b"1701".to_vec())))
            .with(m(Avp::CallingNumber(b"eth0.100:7".to_vec())))
            .with(m(Avp::SubAddress(b"port-7".to_vec())))
            .with(o(Avp::PhysicalChannelId(42)))
            .with(o(Avp::Q931CauseCode {
                cause: 16,
                message: 0x5a,
                advisory: b"normal".to_vec(),
            })),
        3,
        1,
    );
    let icrp = with_seq(
        ControlMessage::new(MessageType::Icrp, 0x1234, 0x0101)
            .with(m(Avp::AssignedSessionId(0x0202))),
        1,
        4,
    );
    let lcp_options = proxy_lcp_options();
    let iccn = with_seq(
        ControlMessage::new(MessageType::Iccn, 0x5678, 0x0202)
            .with(m(Avp::TxConnectSpeed(10_000_000)))
            .with(m(Avp::FramingType(1)))
            .with(o(Avp::InitialReceivedLcpConfReq(lcp_options.0.clone())))
            .with(o(Avp::LastSentLcpConfReq(lcp_options.1.clone())))
            .with(o(Avp::LastReceivedLcpConfReq(lcp_options.0)))
            .with(o(Avp::ProxyAuthenType(2)))
            .with(o(Avp::ProxyAuthenName(b"alice@example".to_vec())))
            .with(o(Avp::ProxyAuthenChallenge(b"fedcba9876543210".to_vec())))
            .with(o(Avp::ProxyAuthenId(9)))
            .with(o(Avp::ProxyAuthenResponse(
                b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff".to_vec(),
            )))
            .with(o(Avp::RxConnectSpeed(2_000_000)))
            .with(o(Avp::PrivateGroupId(b"vrf-blue".to_vec())))
            .with(m(Avp::SequencingRequired)),
        4,
        2,
    );
    let wen = with_seq(
        ControlMessage::new(MessageType::Wen, 0x1234, 0x0101).with(m(Avp::CallErrors {
            crc: 1,
            framing: 2,
            hardware_overruns: 3,
            buffer_overruns: 4,
            timeouts: 5,
            alignment: 6,
        })),
        2,
        5,
    );
    let sli = with_seq(
        ControlMessage::new(MessageType::Sli, 0x5678, 0x0202).with(m(Avp::Accm {
            send: 0xffff_ffff,
            receive: 0x000a_0000,
        })),
        5,
        3,
    );
    let cdn = with_seq(
        ControlMessage::new(MessageType::Cdn, 0x5678, 0x0202)
            .with(m(Avp::ResultCode {
                result: 2,
                error: Some(6),
                message: b"session torn down by operator".to_vec(),
            }))
            .with(m(Avp::AssignedSessionId(0x0101)))
            .with(o(Avp::Q931CauseCode {
                cause: 16,
                message: 0x5a,
                advisory: Vec::new(),
            })),
        6,
        3,
    );
    let stopccn = with_seq(
        ControlMessage::new(MessageType::StopCcn, 0x5678, 0)
            .with(m(Avp::AssignedTunnelId(0x1234)))
            .with(m(Avp::ResultCode {
                result: 1,
                error: None,
                message: Vec::new(),
            })),
        7,
        3,
    );
    vec![
        control("SCCRQ", &sccrq, true),
        control("SCCRP", &sccrp, false),
        control("SCCCN", &scccn, true),
        control("ZLB", &zlb, false),
        control("HELLO", &hello, true),
        control("ICRQ", &icrq, true),
        control("ICRP", &icrp, false),
        control("ICCN with proxy LCP and authentication", &iccn, true),
        control("WEN", &wen, false),
        control("SLI", &sli, true),
        control("CDN with result, error and message", &cdn, true),
        control("StopCCN", &stopccn, true),
    ]
}

/// The LCP options of a Configure-Request as the proxy LCP AVPs carry them
/// (RFC 2661 §4.4.5: without the LCP header): what the subscriber sent and
/// what the LAC sent.
fn proxy_lcp_options() -> (Vec<u8>, Vec<u8>) {
    let subscriber = [LcpOption::Mru(1492), LcpOption::MagicNumber(0x1234_5678)];
    let lac = [
        LcpOption::Mru(1492),
        LcpOption::AuthProtocol(AuthProtocol::Chap(ChapAlgorithm::Md5)),
        LcpOption::MagicNumber(0x9abc_def0),
    ];
    (options(&subscriber), options(&lac))
}

fn options<'a, O: ConfigOption<'a>>(list: &[O]) -> Vec<u8> {
    emitted("options", ppp_cp::options_len(list), |buf| {
        ppp_cp::emit_options(list, buf)
    })
}

/// SCCRQ with the Random Vector and two hidden AVPs (RFC 2661 §4.3).
fn hidden_avp_messages() -> Vec<Frame> {
    let sccrq = ControlMessage::new(MessageType::Sccrq, 0, 0)
        .with(m(Avp::ProtocolVersion {
            version: 1,
            revision: 0,
        }))
        .with(m(Avp::HostName(b"lac-2.example".to_vec())))
        .with(m(Avp::FramingCapabilities(3)))
        .with(m(Avp::RandomVector(
            b"\x5a\x11\xc0\xff\xee\x00\x42\x17".to_vec(),
        )))
        .with(m(Avp::AssignedTunnelId(0x4321)).hide())
        .with(m(Avp::Challenge(b"hidden challenge".to_vec())).hide());
    let iccn = with_seq(
        ControlMessage::new(MessageType::Iccn, 0x5678, 0x0202)
            .with(m(Avp::TxConnectSpeed(10_000_000)))
            .with(m(Avp::FramingType(1)))
            .with(o(Avp::ProxyAuthenType(3)))
            .with(m(Avp::RandomVector(
                b"\x0f\x1e\x2d\x3c\x4b\x5a\x69\x78\x87\x96".to_vec(),
            )))
            .with(o(Avp::ProxyAuthenName(b"bob@example".to_vec())).hide())
            .with(o(Avp::ProxyAuthenId(1)))
            .with(o(Avp::ProxyAuthenResponse(b"pap-password".to_vec())).hide()),
        4,
        2,
    );
    vec![
        control("SCCRQ with hidden AVPs", &sccrq, true),
        control("ICCN with hidden proxy authentication", &iccn, true),
    ]
}

/// The four HA vendor messages and the HA AVPs in IETF messages
/// (DESIGN.md §3).
fn ha_messages() -> Vec<Frame> {
    let lsorq = with_seq(
        ControlMessage::new(MessageType::Lsorq, 0x0a0a, 0)
            .with(o(Avp::RandomVector(
                b"\x01\x02\x03\x04\x05\x06\x07\x08".to_vec(),
            )))
            .with(o(Avp::OffloadOperation(OffloadOperation::AddUpdate)))
            .with(o(Avp::TunnelIdentity {
                lns_tunnel_id: 0x5678,
                lac_tunnel_id: 0x1234,
                lac_address: LAC_IP,
                lac_port: 1701,
                primary_lns: LNS_IP,
            }))
            .with(o(Avp::SessionIdentity {
                lns_session_id: 0x0202,
                lac_session_id: 0x0101,
            }))
            .with(
                o(Avp::SessionState(
                    b"\x00\x01\x00\x04\x05\xd4\x05\xd4".to_vec(),
                ))
                .hide(),
            )
            .with(o(Avp::OwnershipEpoch(3))),
        10,
        20,
    );
    let lsors = with_seq(
        ControlMessage::new(MessageType::Lsors, 0x0b0b, 0)
            .with(o(Avp::OffloadOperation(OffloadOperation::AddUpdate)))
            .with(o(Avp::TunnelIdentity {
                lns_tunnel_id: 0x5678,
                lac_tunnel_id: 0x1234,
                lac_address: LAC_IP,
                lac_port: 1701,
                primary_lns: LNS_IP,
            }))
            .with(o(Avp::SessionIdentity {
                lns_session_id: 0x0202,
                lac_session_id: 0x0101,
            }))
            .with(m(Avp::ResultCode {
                result: 1,
                error: None,
                message: Vec::new(),
            })),
        21,
        11,
    );
    let stplrq = with_seq(
        ControlMessage::new(MessageType::Stplrq, 0x1234, 0)
            .with(o(Avp::PeerLnsAddress(vec![Ipv4Addr::new(192, 0, 2, 3)])))
            .with(o(Avp::SwitchoverType(SwitchoverType::Listed)))
            .with(o(Avp::SessionList(vec![0x0202, 0x0203, 0x0204]))),
        8,
        8,
    );
    let stplrp = with_seq(
        ControlMessage::new(MessageType::Stplrp, 0x5678, 0)
            .with(o(Avp::SwitchoverType(SwitchoverType::Listed)))
            .with(o(Avp::SwitchoverAction {
                action: SwitchoverAction::Denied,
                reason: b"peer unreachable".to_vec(),
            })),
        8,
        9,
    );
    let sccrq = with_seq(
        ControlMessage::new(MessageType::Sccrq, 0, 0)
            .with(m(Avp::ProtocolVersion {
                version: 1,
                revision: 0,
            }))
            .with(m(Avp::HostName(b"lac-1.example".to_vec())))
            .with(m(Avp::FramingCapabilities(3)))
            .with(m(Avp::AssignedTunnelId(0x1235)))
            .with(o(Avp::HaCapability {
                version: 1,
                flags: 0,
            }))
            .with(o(Avp::RecoveryTunnel {
                primary_lns: LNS_IP,
                lns_tunnel_id: 0x5678,
                lac_tunnel_id: 0x1234,
            })),
        0,
        0,
    );
    let sccrp = with_seq(
        ControlMessage::new(MessageType::Sccrp, 0x1235, 0)
            .with(m(Avp::ProtocolVersion {
                version: 1,
                revision: 0,
            }))
            .with(m(Avp::FramingCapabilities(1)))
            .with(m(Avp::HostName(b"lns-1.example".to_vec())))
            .with(m(Avp::AssignedTunnelId(0x9abc)))
            .with(o(Avp::HaCapability {
                version: 1,
                flags: 0,
            }))
            .with(o(Avp::PeerLnsAddress(vec![
                Ipv4Addr::new(192, 0, 2, 3),
                Ipv4Addr::new(192, 0, 2, 4),
            ]))),
        0,
        1,
    );
    let icrq = with_seq(
        ControlMessage::new(MessageType::Icrq, 0x9abc, 0)
            .with(m(Avp::AssignedSessionId(0x0303)))
            .with(m(Avp::CallSerialNumber(8)))
            .with(o(Avp::RecoverySession(0x0202))),
        1,
        1,
    );
    let icrp = with_seq(
        ControlMessage::new(MessageType::Icrp, 0x1235, 0x0303)
            .with(m(Avp::AssignedSessionId(0x0404)))
            .with(o(Avp::OwnershipEpoch(4))),
        1,
        2,
    );
    vec![
        control("LSORQ", &lsorq, false),
        control("LSORS", &lsors, false),
        control("STPLRQ", &stplrq, false),
        control("STPLRP", &stplrp, true),
        control("SCCRQ with HA-Capability and Recovery-Tunnel", &sccrq, true),
        control(
            "SCCRP with HA-Capability and Peer-LNS-Address",
            &sccrp,
            false,
        ),
        control("ICRQ with Recovery-Session", &icrq, true),
        control("ICRP with Ownership-Epoch", &icrp, false),
    ]
}

#[test]
fn tshark_dissects_our_control_messages() {
    let mut frames = rfc2661_control_messages();
    frames.extend(hidden_avp_messages());
    frames.extend(ha_messages());
    dissect_and_check("control", &frames);
}

// ---------------------------------------------------------------------------
// PPP: frames, data messages and PPPoE.

/// A PPP frame: our header, then `information`.
fn ppp_frame(header: ppp::Repr, information: &[u8]) -> Vec<u8> {
    let header = emitted("PPP header", header.buffer_len(), |buf| header.emit(buf));
    [&header[..], information].concat()
}

/// An L2TP data message around a PPP frame, over UDP, with the
/// expectations of the L2TP and PPP headers.
fn data_message(
    what: &str,
    header: l2tp::HeaderRepr,
    ppp_header: ppp::Repr,
    information: &[u8],
    from_lac: bool,
) -> Frame {
    let ppp = ppp_frame(ppp_header, information);
    let mut l2tp = vec![0; header.buffer_len() + ppp.len()];
    header.emit(&mut l2tp, ppp.len()).unwrap();
    let at = header.buffer_len();
    l2tp[at..].copy_from_slice(&ppp);
    let mut f = Frame::new(what, over_udp(&l2tp, from_lac))
        .num("l2tp.type", 0u8)
        .num("l2tp.length_bit", header.length_present)
        .num("l2tp.seq_bit", header.sequence.is_some())
        .num("l2tp.offset_bit", header.offset_size.is_some())
        .num("l2tp.priority", header.priority)
        .num("l2tp.version", 2u8)
        .num("l2tp.tunnel", header.tunnel_id)
        .num("l2tp.session", header.session_id);
    f = if header.length_present {
        f.num("l2tp.length", l2tp.len() as u64)
    } else {
        f.absent("l2tp.length")
    };
    f = match header.sequence {
        Some((ns, nr)) => f.num("l2tp.Ns", ns).num("l2tp.Nr", nr),
        None => f.absent("l2tp.Ns").absent("l2tp.Nr"),
    };
    f = match header.offset_size {
        Some(size) => {
            let f = f.num("l2tp.offset", size);
            if size > 0 {
                f.num("l2tp.offset_padding", 1u8)
            } else {
                f.absent("l2tp.offset_padding")
            }
        }
        None => f.absent("l2tp.offset").absent("l2tp.offset_padding"),
    };
    expect_ppp_header(f, ppp_header)
}

fn expect_ppp_header(f: Frame, header: ppp::Repr) -> Frame {
    let f = if header.address_control {
        f.num("ppp.address", ppp::ADDRESS)
            .num("ppp.control", ppp::CONTROL)
    } else {
        f.absent("ppp.address").absent("ppp.control")
    };
    f.num("ppp.protocol", u16::from(header.protocol))
}

/// Ethernet around a PPPoE packet, subscriber to LAC or back.
fn over_ethernet(pppoe: &[u8], ethertype: ethernet::EtherType, from_subscriber: bool) -> Vec<u8> {
    let subscriber = ethernet::Address([0x02, 0, 0, 0, 0, 0x10]);
    let (src_addr, dst_addr) = match (from_subscriber, ethertype) {
        // A PADI is broadcast (RFC 2516 §5.1).
        (true, ethernet::EtherType::PppoeDiscovery) if pppoe[1] == 0x09 => {
            (subscriber, ethernet::Address::BROADCAST)
        }
        (true, _) => (subscriber, LAC_MAC),
        (false, _) => (LAC_MAC, subscriber),
    };
    let eth = ethernet::Repr {
        dst_addr,
        src_addr,
        outer_tag: None,
        inner_tag: None,
        ethertype,
    };
    let header = emitted("Ethernet header", eth.buffer_len(), |buf| eth.emit(buf));
    [&header[..], pppoe].concat()
}

/// A PPPoE session frame around a PPP frame (no Address/Control,
/// RFC 2516 §7), with the PPPoE and PPP header expectations.
fn pppoe_session(what: &str, session_id: u16, ppp_header: ppp::Repr, information: &[u8]) -> Frame {
    let ppp = ppp_frame(ppp_header, information);
    let header = pppoe::Repr {
        code: pppoe::Code::Session,
        session_id,
        payload_len: ppp.len(),
    };
    let header = emitted("PPPoE header", header.buffer_len(), |buf| header.emit(buf));
    let packet = [&header[..], &ppp[..]].concat();
    let f = Frame::new(
        what,
        over_ethernet(&packet, ethernet::EtherType::PppoeSession, true),
    )
    .num("pppoe.version", 1u8)
    .num("pppoe.type", 1u8)
    .num("pppoe.code", 0u8)
    .num("pppoe.session_id", session_id)
    .num("pppoe.payload_length", ppp.len() as u64);
    expect_ppp_header(f, ppp_header)
}

/// A PPPoE Discovery packet with the header and tag expectations.
fn pppoe_discovery(what: &str, repr: &DiscoveryRepr<'_>, from_subscriber: bool) -> Frame {
    let packet = emitted(what, repr.buffer_len(), |buf| repr.emit(buf));
    let mut f = Frame::new(
        what,
        over_ethernet(
            &packet,
            ethernet::EtherType::PppoeDiscovery,
            from_subscriber,
        ),
    )
    .num("pppoe.version", 1u8)
    .num("pppoe.type", 1u8)
    .num("pppoe.code", u8::from(repr.code))
    .num("pppoe.session_id", repr.session_id)
    .num(
        "pppoe.payload_length",
        (packet.len() - pppoe::HEADER_LEN) as u64,
    );
    // tshark shows each tag by its value field alone (no Type and Length
    // fields for the tags it knows) and leaves out a tag with an empty
    // value (the "any service" Service-Name of a PADI): the Payload Length
    // above still counts it. The tree lines check the order across tags.
    for tag in &repr.tags {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let (field, label, want) = match *tag {
            Tag::ServiceName(v) => (
                "pppoed.tags.service_name",
                "Service-Name",
                Want::Text(text(v)),
            ),
            Tag::AcName(v) => ("pppoed.tags.ac_name", "AC-Name", Want::Text(text(v))),
            Tag::HostUniq(v) => (
                "pppoed.tags.host_uniq",
                "Host-Uniq",
                Want::Bytes(v.to_vec()),
            ),
            Tag::AcCookie(v) => (
                "pppoed.tags.ac_cookie",
                "AC-Cookie",
                Want::Bytes(v.to_vec()),
            ),
            Tag::RelaySessionId(v) => (
                "pppoed.tags.relay_session_id",
                "Relay-Session-Id",
                Want::Bytes(v.to_vec()),
            ),
            Tag::ServiceNameError(v) => (
                "pppoed.tags.service_name_error",
                "Service-Name-Error",
                Want::Text(text(v)),
            ),
            Tag::AcSystemError(v) => (
                "pppoed.tags.ac_system_error",
                "AC-System-Error",
                Want::Text(text(v)),
            ),
            Tag::GenericError(v) => (
                "pppoed.tags.generic_error",
                "Generic-Error",
                Want::Text(text(v)),
            ),
            _ => continue,
        };
        if tag.value_len() == 0 {
            f = f.absent(field);
            continue;
        }
        let shown = match &want {
            Want::Text(t) => t.clone(),
            Want::Bytes(b) => hex(b),
            Want::Num(n) => n.to_string(),
        };
        f.push(field, want);
        f = f.tree_line(format!("{label}: {shown}"));
    }
    f
}

/// Where tshark puts an RFC 1661 control protocol's fields: code,
/// identifier and length are `ppp.*` for all three; the options and the
/// LCP-only data have per-protocol names.
trait Dissected<'a>: ConfigOption<'a> {
    const PROTOCOL: ppp::Protocol;
    const OPTION_TYPE: &'static str;
    /// The value fields of one option.
    fn expect(&self, f: Frame) -> Frame;
}

impl<'a> Dissected<'a> for LcpOption<'a> {
    const PROTOCOL: ppp::Protocol = ppp::Protocol::Lcp;
    const OPTION_TYPE: &'static str = "lcp.opt.type";
    fn expect(&self, f: Frame) -> Frame {
        match self {
            LcpOption::Mru(v) => f.num("lcp.opt.mru", *v),
            LcpOption::Accm(v) => f.num("lcp.opt.asyncmap", *v),
            LcpOption::AuthProtocol(AuthProtocol::Pap) => f.num("lcp.opt.auth_protocol", 0xc023u16),
            LcpOption::AuthProtocol(AuthProtocol::Chap(alg)) => f
                .num("lcp.opt.auth_protocol", 0xc223u16)
                .num("lcp.opt.algorithm", u8::from(*alg)),
            LcpOption::AuthProtocol(AuthProtocol::Other { protocol, .. }) => {
                f.num("lcp.opt.auth_protocol", *protocol)
            }
            LcpOption::MagicNumber(v) => f.num("lcp.opt.magic_number", *v),
            _ => f,
        }
    }
}

impl<'a> Dissected<'a> for IpcpOption<'a> {
    const PROTOCOL: ppp::Protocol = ppp::Protocol::Ipcp;
    const OPTION_TYPE: &'static str = "ipcp.opt.type";
    fn expect(&self, f: Frame) -> Frame {
        let ip = |f: Frame, field, a: &Ipv4Addr| f.text(field, &a.to_string());
        match self {
            IpcpOption::IpAddress(a) => ip(f, "ipcp.opt.ip_address", a),
            IpcpOption::PrimaryDns(a) => ip(f, "ipcp.opt.pri_dns_address", a),
            IpcpOption::PrimaryNbns(a) => ip(f, "ipcp.opt.pri_nbns_address", a),
            IpcpOption::SecondaryDns(a) => ip(f, "ipcp.opt.sec_dns_address", a),
            IpcpOption::SecondaryNbns(a) => ip(f, "ipcp.opt.sec_nbns_address", a),
            IpcpOption::Unknown { .. } => f,
        }
    }
}

impl<'a> Dissected<'a> for Ipv6cpOption<'a> {
    const PROTOCOL: ppp::Protocol = ppp::Protocol::Ipv6cp;
    const OPTION_TYPE: &'static str = "ipv6cp.opt.type";
    fn expect(&self, f: Frame) -> Frame {
        match self {
            Ipv6cpOption::InterfaceIdentifier(id) => f.bytes("ipv6cp.interface_identifier", id),
            Ipv6cpOption::Unknown { .. } => f,
        }
    }
}

/// How a PPP frame reaches tshark: in an L2TP data message with this
/// header, from the LAC or from the LNS, or in the subscriber's PPPoE
/// session (without Address/Control, RFC 2516 §7).
#[derive(Clone, Copy)]
enum Link {
    L2tp {
        header: l2tp::HeaderRepr,
        from_lac: bool,
    },
    Pppoe,
}

/// A PPP frame of `protocol` around `information`, carried over `link`,
/// with the expectations of every header.
fn ppp_over(what: &str, link: Link, protocol: ppp::Protocol, information: &[u8]) -> Frame {
    let ppp_header = ppp::Repr::uncompressed(protocol);
    match link {
        Link::L2tp { header, from_lac } => {
            data_message(what, header, ppp_header, information, from_lac)
        }
        Link::Pppoe => pppoe_session(
            what,
            PPPOE_SESSION_ID,
            ppp::Repr {
                address_control: false,
                ..ppp_header
            },
            information,
        ),
    }
}

/// A control packet, emitted and carried over `link`, with the
/// expectations it implies.
fn carrying<'a, O: Dissected<'a>>(what: &str, link: Link, repr: &CpRepr<'a, O>) -> Frame {
    let packet = emitted(what, repr.buffer_len(), |buf| repr.emit(buf));
    let mut f = ppp_over(what, link, O::PROTOCOL, &packet)
        .num("ppp.code", u8::from(repr.code))
        .num("ppp.identifier", repr.identifier)
        .num("ppp.length", packet.len() as u64);
    match &repr.data {
        CpData::Options(options) => {
            for option in options {
                f = option.expect(f.num(O::OPTION_TYPE, option.kind()));
            }
            f
        }
        CpData::Echo { magic_number, .. } => f.num("lcp.magic_number", *magic_number),
        CpData::ProtocolReject { protocol, .. } => f.num("lcp.rej_proto", *protocol),
        _ => f,
    }
}

/// LCP, IPCP and IPv6CP packets of every code we send, in L2TP data
/// messages with each optional header field, and over PPPoE.
fn ppp_control_frames() -> Vec<Frame> {
    use ppp_cp::Code as C;
    let lns_data = l2tp::HeaderRepr::data(0x1234, 0x0101);
    let from_lac = Link::L2tp {
        header: lns_data,
        from_lac: true,
    };
    let from_lns = Link::L2tp {
        header: lns_data,
        from_lac: false,
    };
    let from_lns_with = |header| Link::L2tp {
        header,
        from_lac: false,
    };
    let request = [
        LcpOption::Mru(1460),
        LcpOption::AuthProtocol(AuthProtocol::Chap(ChapAlgorithm::Md5)),
        LcpOption::MagicNumber(0x6b05_19f0),
    ];
    let lcp: [(&str, Link, C, u8, CpData<'_, LcpOption<'_>>); 11] = [
        (
            "LCP Configure-Request",
            from_lns,
            C::ConfigureRequest,
            1,
            CpData::Options(request.to_vec()),
        ),
        (
            "LCP Configure-Ack, L2TP Length",
            from_lns_with(l2tp::HeaderRepr {
                length_present: true,
                ..lns_data
            }),
            C::ConfigureAck,
            1,
            CpData::Options(request.to_vec()),
        ),
        (
            "LCP Configure-Nak, L2TP Ns/Nr",
            from_lns_with(l2tp::HeaderRepr {
                sequence: Some((7, 9)),
                ..lns_data
            }),
            C::ConfigureNak,
            2,
            CpData::Options(vec![
                LcpOption::Mru(1492),
                LcpOption::AuthProtocol(AuthProtocol::Pap),
            ]),
        ),
        (
            "LCP Configure-Reject, L2TP offset",
            from_lns_with(l2tp::HeaderRepr {
                offset_size: Some(4),
                ..lns_data
            }),
            C::ConfigureReject,
            3,
            CpData::Options(vec![
                LcpOption::Accm(0),
                LcpOption::Pfc,
                LcpOption::Acfc,
                LcpOption::Unknown {
                    kind: 17,
                    value: &[0x06, 0x4e],
                },
            ]),
        ),
        (
            "LCP Terminate-Request, L2TP priority",
            from_lns_with(l2tp::HeaderRepr {
                priority: true,
                ..lns_data
            }),
            C::TerminateRequest,
            4,
            CpData::Terminate(b"admin down"),
        ),
        (
            "LCP Terminate-Ack, every L2TP option",
            from_lns_with(l2tp::HeaderRepr {
                length_present: true,
                sequence: Some((8, 10)),
                offset_size: Some(2),
                priority: true,
                ..lns_data
            }),
            C::TerminateAck,
            4,
            CpData::Terminate(&[]),
        ),
        (
            "LCP Echo-Request, L2TP offset 0",
            from_lns_with(l2tp::HeaderRepr {
                offset_size: Some(0),
                ..lns_data
            }),
            C::EchoRequest,
            5,
            CpData::Echo {
                magic_number: 0x6b05_19f0,
                data: &[],
            },
        ),
        (
            "LCP Echo-Reply",
            from_lns,
            C::EchoReply,
            5,
            CpData::Echo {
                magic_number: 0x1234_5678,
                data: b"ping",
            },
        ),
        (
            "LCP Discard-Request",
            from_lns,
            C::DiscardRequest,
            6,
            CpData::Echo {
                magic_number: 0x6b05_19f0,
                data: b"discard me",
            },
        ),
        (
            "LCP Code-Reject",
            from_lns,
            C::CodeReject,
            6,
            // RFC 1661 §5.6: the rejected packet, header included; code 32
            // is no LCP code.
            CpData::CodeReject(&[0x20, 0x09, 0x00, 0x06, 0xde, 0xad]),
        ),
        (
            "LCP Protocol-Reject",
            from_lns,
            C::ProtocolReject,
            7,
            // CCP (0x80fd), which we do not run: its Configure-Request.
            CpData::ProtocolReject {
                protocol: 0x80fd,
                information: &[0x01, 0x01, 0x00, 0x04],
            },
        ),
    ];
    let mut frames: Vec<Frame> = lcp
        .into_iter()
        .map(|(what, link, code, identifier, data)| {
            carrying(
                what,
                link,
                &LcpRepr {
                    code,
                    identifier,
                    data,
                },
            )
        })
        .collect();
    // tshark dissects the rejected information as CCP: a second code,
    // identifier and length.
    if let Some(f) = frames.pop() {
        frames.push(
            f.num("ppp.code", 1u8)
                .num("ppp.identifier", 1u8)
                .num("ppp.length", 4u8),
        );
    }

    // The subscriber asks for an address and DNS servers, the LNS says
    // which, the subscriber takes them.
    let ask = vec![
        IpcpOption::IpAddress(Ipv4Addr::UNSPECIFIED),
        IpcpOption::PrimaryDns(Ipv4Addr::UNSPECIFIED),
        IpcpOption::SecondaryDns(Ipv4Addr::UNSPECIFIED),
    ];
    let assigned = vec![
        IpcpOption::IpAddress(Ipv4Addr::new(198, 51, 100, 7)),
        IpcpOption::PrimaryDns(Ipv4Addr::new(198, 51, 100, 53)),
        IpcpOption::SecondaryDns(Ipv4Addr::new(198, 51, 100, 54)),
    ];
    let ipcp = [
        (
            "IPCP Configure-Request",
            from_lac,
            C::ConfigureRequest,
            1,
            ask,
        ),
        (
            "IPCP Configure-Nak with address and DNS",
            from_lns,
            C::ConfigureNak,
            1,
            assigned.clone(),
        ),
        (
            "IPCP Configure-Ack over PPPoE",
            Link::Pppoe,
            C::ConfigureAck,
            2,
            assigned,
        ),
    ];
    for (what, link, code, identifier, options) in ipcp {
        let repr = IpcpRepr {
            code,
            identifier,
            data: CpData::Options(options),
        };
        frames.push(carrying(what, link, &repr));
    }
    let ipv6cp = Ipv6cpRepr {
        code: C::ConfigureRequest,
        identifier: 1,
        data: CpData::Options(vec![Ipv6cpOption::InterfaceIdentifier([
            0x02, 0x00, 0x5e, 0xff, 0xfe, 0x00, 0x53, 0x01,
        ])]),
    };
    frames.push(carrying("IPv6CP Configure-Request", from_lns, &ipv6cp));
    frames
}

/// PAP (RFC 1334 §2.2) and CHAP (RFC 1994 §4) packets of every code, in
/// L2TP data messages and over PPPoE.
fn authentication_frames() -> Vec<Frame> {
    let header = l2tp::HeaderRepr::data(0x1234, 0x0101);
    let l2tp = |from_lac| Link::L2tp { header, from_lac };

    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    // PAP runs between the subscriber (via the LAC) and the LNS; the frames
    // below only vary how they travel.
    let pap_frame = |what: &str, link: Link, repr: pap::Repr<'_>| {
        let packet = emitted(what, repr.buffer_len(), |buf| repr.emit(buf));
        let f = ppp_over(what, link, ppp::Protocol::Pap, &packet)
            .num("pap.code", u8::from(repr.code()))
            .num("pap.identifier", repr.identifier)
            .num("pap.length", packet.len() as u64);
        match repr.message {
            pap::Message::Request { peer_id, password } => f
                .num("pap.peer_id.length", peer_id.len() as u64)
                .text("pap.peer_id", &text(peer_id))
                .num("pap.password.length", password.len() as u64)
                .text("pap.password", &text(password)),
            // tshark shows an empty Message as an empty string, which its
            // field output cannot tell from no field: the length says it.
            pap::Message::Ack(m) | pap::Message::Nak(m) if m.is_empty() => {
                f.num("pap.message.length", 0u8)
            }
            pap::Message::Ack(m) | pap::Message::Nak(m) => f
                .num("pap.message.length", m.len() as u64)
                .text("pap.message", &text(m)),
            pap::Message::Unknown { .. } => f,
        }
    };
    let pap = [
        (
            "PAP Authenticate-Request over PPPoE",
            Link::Pppoe,
            1,
            pap::Message::Request {
                peer_id: b"alice@example",
                password: b"correct horse",
            },
        ),
        (
            "PAP Authenticate-Ack, empty message",
            l2tp(true),
            1,
            pap::Message::Ack(b""),
        ),
        (
            "PAP Authenticate-Ack",
            l2tp(true),
            2,
            pap::Message::Ack(b"welcome"),
        ),
        (
            "PAP Authenticate-Nak over PPPoE",
            Link::Pppoe,
            3,
            pap::Message::Nak(b"authentication failed"),
        ),
    ];
    let mut frames: Vec<Frame> = pap
        .into_iter()
        .map(|(what, link, identifier, message)| {
            pap_frame(
                what,
                link,
                pap::Repr {
                    identifier,
                    message,
                },
            )
        })
        .collect();

    let chap_frame = |what: &str, repr: chap::Repr<'_>| {
        let packet = emitted(what, repr.buffer_len(), |buf| repr.emit(buf));
        // The LNS challenges and judges; the subscriber responds via the LAC.
        let from_lac = matches!(repr.message, chap::Message::Response { .. });
        let f = ppp_over(what, l2tp(from_lac), ppp::Protocol::Chap, &packet)
            .num("chap.code", u8::from(repr.code()))
            .num("chap.identifier", repr.identifier)
            .num("chap.length", packet.len() as u64);
        match repr.message {
            chap::Message::Challenge { value, name } | chap::Message::Response { value, name } => f
                .num("chap.value_size", value.len() as u64)
                .bytes("chap.value", value)
                .text("chap.name", &text(name)),
            chap::Message::Success(m) | chap::Message::Failure(m) => {
                f.text("chap.message", &text(m))
            }
            chap::Message::Unknown { .. } => f,
        }
    };
    let challenge: &[u8] = b"\x8a\x1f\x3c\x00\x77\xe2\x19\x5d\xa0\x42\x6b\xcc\x01\xfe\x93\x28";
    let chap = [
        (
            "CHAP Challenge",
            7,
            chap::Message::Challenge {
                value: challenge,
                name: b"lns-1",
            },
        ),
        (
            "CHAP Response",
            7,
            chap::Message::Response {
                value: b"\x3b\x9f\x10\xd2\x55\x81\x07\xae\xc4\x6e\x21\x90\x5a\xf3\x0d\x67",
                name: b"alice@example",
            },
        ),
        ("CHAP Success", 7, chap::Message::Success(b"Access granted")),
        ("CHAP Failure", 8, chap::Message::Failure(b"Access denied")),
    ];
    for (what, identifier, message) in chap {
        frames.push(chap_frame(
            what,
            chap::Repr {
                identifier,
                message,
            },
        ));
    }
    frames
}

/// An IPv4/UDP packet of `len` bytes of data, as a subscriber sends it.
fn subscriber_ipv4(len: usize) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 51, 100, 7);
    let dst = Ipv4Addr::new(203, 0, 113, 9);
    let udp = udp::Repr {
        src_port: 40000,
        dst_port: 9,
        payload_len: len,
    };
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ipv4::Protocol::Udp,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 1,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        payload_len: udp.total_len(),
    };
    let mut packet = vec![0xa5; ip.total_len()];
    let at = ip.emit(&mut packet).unwrap();
    udp.emit(&mut packet[at..]).unwrap();
    udp::Packet::new_unchecked(&mut packet[at..]).fill_checksum(src, dst);
    packet
}

/// Data messages carrying subscriber IPv4 with and without Address/Control
/// and with a compressed Protocol field (RFC 1661 §6.5, §6.6), plus a
/// PPPoE session frame.
fn ppp_data_frames() -> Vec<Frame> {
    let header = l2tp::HeaderRepr::data(0x5678, 0x0202);
    let ip = subscriber_ipv4(18);
    let expect_ip_over_pppoe = |f: Frame| {
        f.text("ip.src", "198.51.100.7")
            .text("ip.dst", "203.0.113.9")
            .num("udp.dstport", 9u8)
    };
    // Over L2TP, the outer header (LAC to LNS) comes first.
    let expect_ip = |f: Frame| {
        expect_ip_over_pppoe(
            f.text("ip.src", &LAC_IP.to_string())
                .text("ip.dst", &LNS_IP.to_string())
                .num("udp.dstport", l2tp::UDP_PORT),
        )
    };
    vec![
        expect_ip(data_message(
            "IPv4 in PPP with Address/Control",
            header,
            ppp::Repr::uncompressed(ppp::Protocol::Ipv4),
            &ip,
            true,
        )),
        expect_ip(data_message(
            "IPv4 in PPP without Address/Control (ACFC)",
            header,
            ppp::Repr {
                address_control: false,
                protocol: ppp::Protocol::Ipv4,
                compressed_protocol: false,
            },
            &ip,
            true,
        )),
        expect_ip(data_message(
            "IPv4 in PPP with a one-byte Protocol (PFC)",
            header,
            ppp::Repr {
                address_control: true,
                protocol: ppp::Protocol::Ipv4,
                compressed_protocol: true,
            },
            &ip,
            true,
        )),
        expect_ip(data_message(
            "IPv4 in PPP with ACFC and PFC, every L2TP option",
            l2tp::HeaderRepr {
                length_present: true,
                sequence: Some((1, 0)),
                offset_size: Some(3),
                priority: false,
                ..header
            },
            ppp::Repr {
                address_control: false,
                protocol: ppp::Protocol::Ipv4,
                compressed_protocol: true,
            },
            &ip,
            true,
        )),
        expect_ip_over_pppoe(pppoe_session(
            "IPv4 over PPPoE",
            PPPOE_SESSION_ID,
            ppp::Repr {
                address_control: false,
                protocol: ppp::Protocol::Ipv4,
                compressed_protocol: false,
            },
            &ip,
        )),
    ]
}

/// The PPPoE Discovery stage, PADI to PADT (RFC 2516 §5).
fn pppoe_discovery_frames() -> Vec<Frame> {
    let host_uniq: &[u8] = &[0x00, 0x00, 0x0d, 0xe9];
    let cookie: &[u8] = &[0xc0, 0x0c, 0x1e, 0x5a, 0x11, 0x22, 0x33, 0x44];
    let padi = DiscoveryRepr {
        code: pppoe::Code::Padi,
        session_id: 0,
        tags: vec![Tag::ServiceName(b""), Tag::HostUniq(host_uniq)],
    };
    let pado = DiscoveryRepr {
        code: pppoe::Code::Pado,
        session_id: 0,
        tags: vec![
            Tag::AcName(b"lac-1"),
            Tag::ServiceName(b"internet"),
            Tag::HostUniq(host_uniq),
            Tag::AcCookie(cookie),
        ],
    };
    let padr = DiscoveryRepr {
        code: pppoe::Code::Padr,
        session_id: 0,
        tags: vec![
            Tag::ServiceName(b"internet"),
            Tag::HostUniq(host_uniq),
            Tag::AcCookie(cookie),
        ],
    };
    let pads = DiscoveryRepr {
        code: pppoe::Code::Pads,
        session_id: PPPOE_SESSION_ID,
        tags: vec![Tag::ServiceName(b"internet"), Tag::HostUniq(host_uniq)],
    };
    let pads_error = DiscoveryRepr {
        code: pppoe::Code::Pads,
        session_id: 0,
        tags: vec![
            Tag::ServiceName(b"video"),
            Tag::HostUniq(host_uniq),
            Tag::ServiceNameError(b"no such service"),
        ],
    };
    let padt = DiscoveryRepr {
        code: pppoe::Code::Padt,
        session_id: PPPOE_SESSION_ID,
        tags: vec![Tag::GenericError(b"session closed by the LNS")],
    };
    vec![
        pppoe_discovery("PADI", &padi, true),
        pppoe_discovery("PADO", &pado, false),
        pppoe_discovery("PADR", &padr, true),
        pppoe_discovery("PADS", &pads, false),
        pppoe_discovery("PADS with Service-Name-Error", &pads_error, false),
        pppoe_discovery("PADT", &padt, false),
    ]
}

#[test]
fn tshark_dissects_our_ppp_data_and_pppoe() {
    let mut frames = ppp_control_frames();
    frames.extend(authentication_frames());
    frames.extend(ppp_data_frames());
    frames.extend(pppoe_discovery_frames());
    dissect_and_check("ppp", &frames);
}

/// The checks above only mean something if tshark does flag a broken
/// packet with this filter: an AVP whose Length runs past the message.
#[test]
fn tshark_flags_a_broken_packet() {
    let hello = ControlMessage::new(MessageType::Hello, 1, 0);
    let mut l2tp = emitted("HELLO", hello.buffer_len(), |buf| hello.emit(buf, &CTX));
    // The Message Type AVP's Length (low bits of its first word) 8 -> 40.
    l2tp[l2tp::CONTROL_HEADER_LEN + 1] = 40;
    let dir = ScratchDir::new("dataplane-tshark-broken");
    let pcap = dir.0.join("broken.pcap");
    write_pcap(&pcap, &[Frame::new("broken HELLO", over_udp(&l2tp, true))]);
    let bad = malformed_or_error(&pcap);
    assert_eq!(bad.len(), 1, "tshark flags the broken frame: {bad:?}");
}

/// ARP on the LNS core side (RFC 826): a request, its reply, and the
/// gratuitous ARP a peer LNS sends after adopting a subscriber address
/// (DESIGN.md §3).
#[test]
fn tshark_dissects_our_arp() {
    let lns_core = ethernet::Address([0x02, 0, 0, 0, 0, 0x20]);
    let router = ethernet::Address([0x02, 0, 0, 0, 0, 0x30]);
    let lns_core_ip = Ipv4Addr::new(203, 0, 113, 2);
    let router_ip = Ipv4Addr::new(203, 0, 113, 1);
    let subscriber_ip = Ipv4Addr::new(198, 51, 100, 7);
    let arp_frame = |what: &str, repr: arp::Repr, dst: ethernet::Address| {
        let eth = ethernet::Repr {
            dst_addr: dst,
            src_addr: repr.source_hardware_addr,
            outer_tag: None,
            inner_tag: None,
            ethertype: ethernet::EtherType::Arp,
        };
        let mut frame = vec![0; eth.buffer_len() + repr.buffer_len()];
        let at = eth.emit(&mut frame).unwrap();
        assert_eq!(repr.emit(&mut frame[at..]), Ok(repr.buffer_len()));
        let mac = |a: ethernet::Address| a.to_string();
        Frame::new(what, frame)
            .num("arp.hw.type", arp::HARDWARE_ETHERNET)
            .num("arp.proto.type", 0x0800u16)
            .num("arp.hw.size", 6u8)
            .num("arp.proto.size", 4u8)
            .num("arp.opcode", u16::from(repr.operation))
            .text("arp.src.hw_mac", &mac(repr.source_hardware_addr))
            .text("arp.src.proto_ipv4", &repr.source_protocol_addr.to_string())
            .text("arp.dst.hw_mac", &mac(repr.target_hardware_addr))
            .text("arp.dst.proto_ipv4", &repr.target_protocol_addr.to_string())
    };
    // tshark adds the flag only to a gratuitous ARP.
    let arp_frame = |what: &str, repr: arp::Repr, dst: ethernet::Address, gratuitous: bool| {
        let f = arp_frame(what, repr, dst);
        if gratuitous {
            f.num("arp.isgratuitous", 1u8)
        } else {
            f.absent("arp.isgratuitous")
        }
    };
    let request = arp::Repr {
        operation: arp::Operation::Request,
        source_hardware_addr: lns_core,
        source_protocol_addr: lns_core_ip,
        target_hardware_addr: ethernet::Address([0; 6]),
        target_protocol_addr: router_ip,
    };
    let reply = arp::Repr {
        operation: arp::Operation::Reply,
        source_hardware_addr: lns_core,
        source_protocol_addr: lns_core_ip,
        target_hardware_addr: router,
        target_protocol_addr: router_ip,
    };
    // The whole frame as the adopting LNS injects it (RFC 5227 §3).
    let announcement = arp_frame(
        "ARP announcement",
        arp::Repr::gratuitous(lns_core, subscriber_ip),
        ethernet::Address::BROADCAST,
        true,
    );
    let announcement = Frame {
        bytes: emitted("ARP announcement", arp::ANNOUNCEMENT_LEN, |b| {
            arp::emit_announcement(lns_core, subscriber_ip, b)
        }),
        ..announcement
    }
    .text("eth.dst", "ff:ff:ff:ff:ff:ff")
    .text("eth.src", &lns_core.to_string());
    let frames = [
        arp_frame("ARP request", request, ethernet::Address::BROADCAST, false),
        arp_frame("ARP reply", reply, router, false),
        arp_frame(
            "gratuitous ARP",
            arp::Repr::gratuitous(lns_core, subscriber_ip),
            ethernet::Address::BROADCAST,
            true,
        ),
        announcement,
    ];
    dissect_and_check("arp", &frames);
}
