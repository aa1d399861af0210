//! Benchmarks and the `l2bench` subscriber emulator and traffic generator.
//!
//! The fast-path workloads live here so that the criterion benchmark
//! (`benches/fastpath.rs`) and the instruction-count gate
//! (`src/bin/fastpath_instructions.rs`, run by `gate.sh`) measure the same
//! packets through the same worker.

pub mod hasync;
pub mod linerate;
pub mod subscribers;

use dataplane::io::memory::MemoryPort;
use dataplane::testkit::{self as lab, Encoding};
use dataplane::worker::{Role, Worker, WorkerConfig};

/// Subscriber payload after the inner IPv4 and UDP headers: a small
/// packet, where the per-packet work dominates.
pub const PAYLOAD: usize = 26;

/// One of the three per-packet paths of issue 4 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// LNS: L2TP from a LAC → IPv4 toward the core.
    LnsUpstream,
    /// LNS: IPv4 from the core → L2TP toward the LAC.
    LnsDownstream,
    /// LAC: half PPPoE → L2TP, half L2TP → PPPoE.
    LacRelay,
}

impl Path {
    /// All three, in report order.
    pub const ALL: [Path; 3] = [Path::LnsUpstream, Path::LnsDownstream, Path::LacRelay];

    /// The name in benchmark ids and in the baseline file.
    pub fn name(self) -> &'static str {
        match self {
            Path::LnsUpstream => "lns_upstream",
            Path::LnsDownstream => "lns_downstream",
            Path::LacRelay => "lac_relay",
        }
    }

    /// The path named `name`.
    pub fn from_name(name: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The worker role that runs it.
    pub fn role(self) -> Role {
        match self {
            Path::LacRelay => Role::Lac,
            _ => Role::Lns,
        }
    }

    /// Input frame `n` (port, bytes) for a table of `sessions`.
    pub fn frame(self, n: usize, sessions: usize) -> (usize, Vec<u8>) {
        // A stride coprime with the session count spreads consecutive
        // packets across the table, so lookups miss the cache as they
        // would with real subscribers.
        let i = (n * 7919) % sessions.max(1);
        match self {
            Path::LnsUpstream => (0, lab::lns_upstream(i, PAYLOAD, Encoding::default())),
            Path::LnsDownstream => (1, lab::lns_downstream(i, PAYLOAD)),
            Path::LacRelay if n % 2 == 0 => (0, lab::lac_upstream(i, PAYLOAD)),
            Path::LacRelay => (1, lab::lac_downstream(i, PAYLOAD)),
        }
    }

    /// A worker for this path with the lab's `sessions` and bursts of
    /// `burst`, over the lab's two memory ports (one frame memory, as a
    /// worker's AF_XDP ports share a UMEM).
    pub fn worker(self, sessions: usize, burst: usize) -> Worker<MemoryPort> {
        self.worker_with_prefetch(sessions, burst, true)
    }

    /// [`Path::worker`], with the burst prefetch on or off (to measure
    /// what it saves and costs).
    pub fn worker_with_prefetch(
        self,
        sessions: usize,
        burst: usize,
        prefetch: bool,
    ) -> Worker<MemoryPort> {
        let config = WorkerConfig {
            burst,
            prefetch,
            ..lab::config(self.role(), sessions)
        };
        lab::worker_with(config, sessions, lab::ports())
    }
}
