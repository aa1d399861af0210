//! What an operator gets from either daemon: logs whose filter a reload can
//! change, signals (SIGTERM/SIGINT stop cleanly, SIGHUP reloads), the
//! control socket and the metrics.
//!
//! A daemon uses them in a few lines:
//!
//! ```ignore
//! let logging = ops::Logging::init(config.control.log.as_deref());
//! let signals = ops::Signals::install()?;
//! let mut operator = ops::Operator::start(&config.control)?;
//! loop {
//!     if signals.terminate_requested() { break; }
//!     if signals.take_reload() { /* re-read the file, logging.set_filter(..) */ }
//!     driver.run_until(driver.now() + ops::SLICE, ..)?;
//!     operator.control.poll(|request| handle(request));
//! }
//! ```

// Each daemon uses the part it needs.
#![allow(dead_code)]

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use controlplane::config::Control;
use controlplane::ctl::ControlServer;
use controlplane::metrics::{Metrics, MetricsServer};
use tracing::info;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::BoxError;

/// How long the control loop runs the driver between looks at the control
/// socket, the signals and the metrics when no fast path needs it sooner:
/// an operator's command waits at most this long.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// With a fast path, the driver runs in slices this short: punted frames
/// (PPP control, PPPoE discovery) wake nobody, so the loop looks for them
/// at least this often (the plan's ≤ 2 ms).
pub(crate) const FASTPATH_SLICE: Duration = Duration::from_millis(1);

/// Waiting only for the workers' barrier echo, the loop waits on the L2TP
/// socket this long at most before it looks at the workers again.
pub(crate) const WORKER_NAP: Duration = Duration::from_micros(50);

/// Control messages read per turn at most when [`Pace::Busy`] (then the
/// loop turns, so punts, the node's answers and the workers are not kept
/// waiting).
pub(crate) const CONTROL_BURST: usize = 256;

/// What a daemon's control loop left under way, which sets how long its
/// next turn may wait on the L2TP socket.
///
/// A turn that handled punts or read control messages comes back at once
/// (more may be queued) and reads the socket without waiting
/// ([`Driver::receive_waiting`](controlplane::driver::Driver::receive_waiting)):
/// each exchange of a recovery (ICRP in, program, barrier, ICCN out) cost a
/// slice or two when the loop waited them out. One that only waits for the
/// workers (an answered call, a move, whose fast-path entries must be in
/// place first) waits on the socket for a [`WORKER_NAP`], so an LSORS, an
/// ICRP or a Hello that arrives meanwhile wakes it at once; it used to
/// sleep instead, deaf to the socket, and that sleep was most of the
/// offload lag (docs/ha-protocol.md §5.3). Otherwise a whole slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    Busy,
    WaitingForWorkers,
    Idle,
}

impl Pace {
    pub(crate) fn after(busy: bool, waiting_for_workers: bool) -> Pace {
        if busy {
            Pace::Busy
        } else if waiting_for_workers {
            Pace::WaitingForWorkers
        } else {
            Pace::Idle
        }
    }

    /// How long the next turn may wait on the socket.
    pub(crate) fn wait(self, slice: Duration) -> Duration {
        match self {
            Pace::Busy => Duration::ZERO,
            Pace::WaitingForWorkers => WORKER_NAP.min(slice),
            Pace::Idle => slice,
        }
    }
}

/// Makes the calling thread, the control loop's, a SCHED_RR thread of
/// `priority` (`control.realtime_priority`, see
/// [`Control`](controlplane::config::Control)); 0 leaves it as it is.
/// Threads it starts later are ordinary ones (SCHED_RESET_ON_FORK); the
/// workers exist already and keep their own scheduling. A refusal (no
/// CAP_SYS_NICE, a cgroup without a real-time budget) is logged and the
/// daemon runs on with an ordinary thread: slower to answer, not broken.
pub(crate) fn schedule_control_thread(priority: u8) {
    if priority == 0 {
        return;
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: sched_setscheduler only reads `param`, which outlives the
    // call; pid 0 is the calling thread.
    let set =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if set == 0 {
        info!(priority, "control thread runs SCHED_RR");
    } else {
        let error = std::io::Error::last_os_error();
        tracing::warn!(priority, %error, "control thread stays an ordinary thread: real-time scheduling refused (control.realtime_priority)");
    }
}

/// The log filter, changeable at run time unless `RUST_LOG` set it.
pub(crate) struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
    current: String,
}

impl Logging {
    /// Logs to stderr (colours only on a terminal). The filter is
    /// `RUST_LOG` when set, else `filter` (the config's `control.log`),
    /// else `info`.
    pub(crate) fn init(filter: Option<&str>) -> Logging {
        let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
        let from_env = env.is_some();
        let current = env
            .or_else(|| filter.map(str::to_owned))
            .unwrap_or_else(|| "info".to_owned());
        let initial = EnvFilter::try_new(&current).unwrap_or_else(|_| EnvFilter::new("info"));
        let (layer, handle) = reload::Layer::new(initial);
        tracing_subscriber::registry()
            .with(layer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false),
            )
            // A second subscriber (tests that start two daemons in one
            // process) keeps the first: logging is not worth failing for.
            .try_init()
            .ok();
        Logging {
            handle,
            from_env,
            current,
        }
    }

    /// Changes the filter (a reload's `control.log`); `None` is `info`.
    /// Returns what it did, for the log.
    pub(crate) fn set_filter(&mut self, filter: Option<&str>) -> String {
        let wanted = filter.unwrap_or("info");
        if self.from_env {
            return format!("RUST_LOG is set: the log filter stays {:?}", self.current);
        }
        match EnvFilter::try_new(wanted) {
            Ok(f) => match self.handle.reload(f) {
                Ok(()) => {
                    self.current = wanted.to_owned();
                    format!("log filter now {wanted:?}")
                }
                Err(e) => format!("log filter unchanged: {e}"),
            },
            Err(e) => format!("log filter unchanged: {wanted:?}: {e}"),
        }
    }
}

/// The signals a daemon obeys: SIGTERM and SIGINT ask for a clean stop (a
/// second one stops at once, exit status 1), SIGHUP for a reload. A clone
/// shares the flags (a test sets them with [`Signals::request_stop`] and
/// [`Signals::request_reload`]).
#[derive(Clone)]
pub(crate) struct Signals {
    terminate: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers.
    pub(crate) fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let terminate = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit sees the flag the first
            // signal set only from the second signal on.
            signal_hook::flag::register_conditional_shutdown(signal, 1, terminate.clone())?;
            signal_hook::flag::register(signal, terminate.clone())?;
        }
        signal_hook::flag::register(SIGHUP, reload.clone())?;
        Ok(Signals { terminate, reload })
    }

    /// Flags no signal sets: for tests, which set them by hand.
    pub(crate) fn manual() -> Signals {
        Signals {
            terminate: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
        }
    }

    /// As SIGTERM.
    pub(crate) fn request_stop(&self) {
        self.terminate.store(true, Ordering::Relaxed);
    }

    /// As SIGHUP.
    pub(crate) fn request_reload(&self) {
        self.reload.store(true, Ordering::Relaxed);
    }

    /// A stop was asked for.
    pub(crate) fn terminate_requested(&self) -> bool {
        self.terminate.load(Ordering::Relaxed)
    }

    /// A reload was asked for since the last call.
    pub(crate) fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::Relaxed)
    }
}

/// The control socket, and the metrics with their HTTP server when
/// configured.
pub(crate) struct Operator {
    /// The control socket: poll it from the loop.
    pub(crate) control: ControlServer,
    /// The metrics: update them from the loop.
    pub(crate) metrics: Metrics,
    /// The metrics' HTTP server: keep it, dropping it stops it.
    pub(crate) metrics_server: Option<MetricsServer>,
}

impl Operator {
    /// Opens `control.socket` and, if configured, serves the metrics on
    /// `control.metrics`.
    pub(crate) fn start(control: &Control) -> Result<Operator, BoxError> {
        let server = ControlServer::bind(&control.socket).map_err(|e| {
            format!(
                "control socket {} (control.socket): {e}",
                control.socket.display()
            )
        })?;
        let metrics = Metrics::new();
        let metrics_server = match control.metrics {
            Some(address) => Some(
                metrics
                    .serve(address)
                    .map_err(|e| format!("{e} (control.metrics)"))?,
            ),
            None => None,
        };
        info!(
            socket = %control.socket.display(),
            metrics = %metrics_server.as_ref().map_or("-".to_owned(), |s| format!("http://{}/metrics", s.address())),
            "operator interfaces"
        );
        Ok(Operator {
            control: server,
            metrics,
            metrics_server,
        })
    }
}
