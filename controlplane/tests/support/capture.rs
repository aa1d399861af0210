//! Packet captures inside a namespace (dumpcap, which comes with tshark)
//! and reading them back with tshark, so a test checks what was on the wire
//! with an independent dissector, not with our own codecs.
//!
//! Learned by hand: dumpcap says "Capturing on 'IFACE'" and "File: PATH"
//! before the capture is live, and it hands packets to the file in blocks up
//! to about a second late; on SIGINT it drops what it has not written yet.
//! So a capture proves both ends itself: it sends a marker datagram across
//! the link (UDP to the discard port, which the capture filter takes too) and
//! waits until the marker is in the file, once before the test talks and once
//! before it stops. (tcpdump `-U --immediate-mode` would not need that, but
//! it is one more package, and its "listening on" is the only hint.)

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::netns::{error, require_program, run, Lab, Link, Netns, ProcessId};

/// The discard port (RFC 863): nothing listens there; markers go to it.
const MARKER_PORT: u16 = 9;
/// L2TP, and the markers. l2tpns also multicasts cluster heartbeats (kept on
/// `lo` by the harness, but the filter makes sure).
const FILTER: &str = "udp port 1701 or udp port 9";
/// The dissector is forced on the port, as a reader of the pcap would.
const DECODE_AS: &str = "udp.port==1701,l2tp";
/// How long a marker may take to show up in the file.
const MARKER_LIMIT: Duration = Duration::from_secs(10);
/// How often a marker is sent again while we wait for it.
const MARKER_INTERVAL: Duration = Duration::from_millis(100);

/// A running dumpcap.
#[derive(Debug)]
pub(crate) struct Capture {
    process: ProcessId,
    pcap: PathBuf,
    marker_socket: UdpSocket,
    marker_to: SocketAddr,
}

impl Capture {
    /// Starts capturing L2TP on `interface` inside `ns` into `<name>.pcap` in
    /// the scratch directory, and returns once the capture is live: a marker
    /// sent to `peer` (the other end of the link) is in the file.
    pub(crate) fn start(
        lab: &mut Lab,
        ns: &Netns,
        interface: &str,
        peer: Ipv4Addr,
        name: &str,
    ) -> io::Result<Capture> {
        let dumpcap = require_program("dumpcap", "tshark")?;
        require_program("tshark", "tshark")?;
        let pcap = lab.path(&format!("{name}.pcap"));
        let dumpcap = dumpcap.to_string_lossy().into_owned();
        let file = pcap.to_string_lossy().into_owned();
        // -P: classic pcap, what every reader takes.
        #[rustfmt::skip]
        let process = lab.spawn(ns, &format!("dumpcap-{name}"),
            &[&dumpcap, "-i", interface, "-f", FILTER, "-P", "-w", &file])?;
        lab.wait_for_output(process, "File: ", MARKER_LIMIT)?;
        let marker_socket = lab.udp_socket(ns, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        let capture = Capture {
            process,
            pcap,
            marker_socket,
            marker_to: SocketAddr::V4(SocketAddrV4::new(peer, MARKER_PORT)),
        };
        capture.mark(lab, "start")?;
        Ok(capture)
    }

    /// Sends a marker across the link until it is in the file.
    fn mark(&self, lab: &mut Lab, label: &str) -> io::Result<()> {
        let marker = format!("l2tp-interop-capture-marker-{label}");
        let deadline = Instant::now() + MARKER_LIMIT;
        loop {
            // A lost or refused marker is sent again.
            let _ = self
                .marker_socket
                .send_to(marker.as_bytes(), self.marker_to);
            std::thread::sleep(MARKER_INTERVAL);
            let bytes = std::fs::read(&self.pcap).unwrap_or_default();
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                return Ok(());
            }
            if !lab.running(self.process) || Instant::now() >= deadline {
                return Err(error(format!(
                    "capture {}: marker {label:?} not in the file within {MARKER_LIMIT:?}\n{}",
                    self.pcap.display(),
                    lab.report()
                )));
            }
        }
    }

    /// Ends the capture, once everything sent so far is in the file, and
    /// returns the file.
    pub(crate) fn stop(self, lab: &mut Lab) -> io::Result<Pcap> {
        self.mark(lab, "end")?;
        lab.stop(self.process, Signal::INT, Duration::from_secs(3))?;
        Ok(Pcap { path: self.pcap })
    }
}

/// A finished capture file.
#[derive(Debug, Clone)]
pub(crate) struct Pcap {
    path: PathBuf,
}

/// One L2TP packet as tshark dissected it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) frame: u32,
    pub(crate) src: String,
    pub(crate) dst: String,
    /// True for a control message (T bit), false for a data message.
    pub(crate) control: bool,
    pub(crate) tunnel: u16,
    pub(crate) session: u16,
    /// Ns and Nr of a control message (RFC 2661 §3.1).
    pub(crate) ns: Option<u16>,
    pub(crate) nr: Option<u16>,
    /// The Message Type AVP; `None` for a ZLB or a data message.
    pub(crate) message_type: Option<u16>,
    pub(crate) host_name: Option<String>,
    pub(crate) result_code: Option<u16>,
    /// Tunnel authentication (RFC 2661 §5.1.1): a Challenge AVP, a Challenge
    /// Response AVP.
    pub(crate) challenge: bool,
    pub(crate) challenge_response: bool,
    /// For a data message carrying PPP: its protocol and code (LCP, PAP,
    /// CHAP, IPCP...).
    pub(crate) ppp_protocol: Option<u16>,
    pub(crate) ppp_code: Option<u8>,
}

impl Packet {
    /// A short name: the control message's RFC 2661 §3.2 abbreviation, `ZLB`,
    /// or `DATA` (`DATA LCP-ConfReq` when tshark saw the PPP inside).
    pub(crate) fn kind(&self) -> String {
        match (self.control, self.message_type) {
            (true, Some(t)) => message_name(t).map_or_else(|| format!("MSG{t}"), str::to_owned),
            (true, None) => "ZLB".to_owned(),
            (false, _) => match (self.ppp_protocol, self.ppp_code) {
                (Some(0xc021), Some(code)) => format!("DATA LCP-{}", lcp_code_name(code)),
                (Some(proto), _) => format!("DATA PPP-{proto:#06x}"),
                (None, _) => "DATA".to_owned(),
            },
        }
    }
}

/// RFC 2661 §3.2 control message types.
pub(crate) fn message_name(message_type: u16) -> Option<&'static str> {
    Some(match message_type {
        1 => "SCCRQ",
        2 => "SCCRP",
        3 => "SCCCN",
        4 => "StopCCN",
        6 => "HELLO",
        7 => "OCRQ",
        8 => "OCRP",
        9 => "OCCN",
        10 => "ICRQ",
        11 => "ICRP",
        12 => "ICCN",
        14 => "CDN",
        15 => "WEN",
        16 => "SLI",
        _ => return None,
    })
}

fn lcp_code_name(code: u8) -> String {
    match code {
        1 => "ConfReq".to_owned(),
        2 => "ConfAck".to_owned(),
        3 => "ConfNak".to_owned(),
        4 => "ConfRej".to_owned(),
        5 => "TermReq".to_owned(),
        6 => "TermAck".to_owned(),
        9 => "EchoReq".to_owned(),
        10 => "EchoRep".to_owned(),
        other => format!("code{other}"),
    }
}

const FIELDS: [&str; 17] = [
    "frame.number",
    "ip.src",
    "ip.dst",
    "l2tp.type",
    "l2tp.tunnel",
    "l2tp.session",
    "l2tp.Ns",
    "l2tp.Nr",
    "l2tp.avp.message_type",
    "l2tp.avp.host_name",
    "l2tp.result_code",
    "l2tp.avp.chap_challenge",
    "l2tp.avp.chap_challenge_response",
    "ppp.protocol",
    "ppp.code",
    // tshark names the code of PAP and CHAP packets in their own fields.
    "pap.code",
    "chap.code",
];

impl Pcap {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn tshark(&self, extra: &[&str]) -> io::Result<String> {
        let file = self.path.to_string_lossy().into_owned();
        let mut argv = vec!["tshark", "-n", "-r", &file, "-d", DECODE_AS];
        argv.extend_from_slice(extra);
        let out = run(&argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every L2TP packet, in capture order.
    pub(crate) fn packets(&self) -> io::Result<Vec<Packet>> {
        let mut argv = vec![
            "-Y",
            "l2tp",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "occurrence=f",
        ];
        for f in FIELDS {
            argv.extend(["-e", f]);
        }
        let text = self.tshark(&argv)?;
        text.lines().map(parse_line).collect()
    }

    /// What tshark finds malformed or wrong (expert info of severity error)
    /// in what the peers sent; empty when the capture is clean. Our markers
    /// are left out: they come from an ephemeral port, which tshark may
    /// take for some other protocol's (41170 is MANOLITO's) and call
    /// malformed.
    pub(crate) fn problems(&self) -> io::Result<String> {
        let filter = format!(
            "(_ws.malformed || _ws.expert.severity >= error) && !(udp.dstport == {MARKER_PORT})"
        );
        Ok(self.tshark(&["-Y", &filter])?.trim().to_owned())
    }

    /// tshark's one line per L2TP packet (the markers left out).
    pub(crate) fn summary(&self) -> io::Result<String> {
        self.tshark(&["-Y", "l2tp"])
    }
}

fn parse_line(line: &str) -> io::Result<Packet> {
    let cols: Vec<&str> = line.split('\t').collect();
    if cols.len() != FIELDS.len() {
        return Err(error(format!(
            "tshark printed {} fields, expected {}: {line:?}",
            cols.len(),
            FIELDS.len()
        )));
    }
    let opt = |i: usize| Some(cols[i]).filter(|s| !s.is_empty());
    let number = |i: usize| -> io::Result<Option<u32>> {
        opt(i)
            .map(|s| match s.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => s.parse(),
            })
            .transpose()
            .map_err(|e| error(format!("tshark field {} = {:?}: {e}", FIELDS[i], cols[i])))
    };
    let narrow = |v: Option<u32>| v.and_then(|v| u16::try_from(v).ok());
    Ok(Packet {
        frame: number(0)?.unwrap_or(0),
        src: cols[1].to_owned(),
        dst: cols[2].to_owned(),
        control: number(3)? == Some(1),
        tunnel: narrow(number(4)?).unwrap_or(0),
        session: narrow(number(5)?).unwrap_or(0),
        ns: narrow(number(6)?),
        nr: narrow(number(7)?),
        message_type: narrow(number(8)?),
        host_name: opt(9).map(str::to_owned),
        result_code: narrow(number(10)?),
        challenge: opt(11).is_some(),
        challenge_response: opt(12).is_some(),
        ppp_protocol: narrow(number(13)?),
        ppp_code: number(14)?
            .or(number(15)?)
            .or(number(16)?)
            .and_then(|v| u8::try_from(v).ok()),
    })
}

/// The control messages (ZLBs and data left out) as `SRC>DST KIND`, with
/// the link's first end named `LAC` and its second `LNS` (how every lab
/// here is wired), for an assertion that reads like the call flow.
pub(crate) fn control_flow(packets: &[Packet], link: &Link) -> Vec<String> {
    let (lac, lns) = (link.a.to_string(), link.b.to_string());
    let name = |addr: &str| match addr {
        a if a == lac => "LAC".to_owned(),
        a if a == lns => "LNS".to_owned(),
        a => a.to_owned(),
    };
    packets
        .iter()
        .filter(|p| p.control && p.message_type.is_some())
        .map(|p| format!("{}>{} {}", name(&p.src), name(&p.dst), p.kind()))
        .collect()
}

/// True when some control message from `by` after `message` in the capture
/// acknowledges it: its Nr is past the message's Ns (RFC 2661 §5.8, modulo
/// 2^16), be it a ZLB or a piggybacked acknowledgement.
pub(crate) fn acknowledged(packets: &[Packet], message: &Packet, by: &str) -> bool {
    let Some(ns) = message.ns else {
        return false;
    };
    packets
        .iter()
        .filter(|p| p.frame > message.frame && p.control && p.src == by)
        .filter_map(|p| p.nr)
        .any(|nr| nr.wrapping_sub(ns).wrapping_sub(1) < 0x8000)
}
