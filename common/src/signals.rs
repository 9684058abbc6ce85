//! Waiting for the signals that stop the daemons.

use std::fmt;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// A signal a daemon treats as a request to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    /// SIGPWR: maitred's "the VM is shutting down".
    Pwr,
}

impl StopSignal {
    fn kind(self) -> SignalKind {
        match self {
            StopSignal::Term => SignalKind::terminate(),
            StopSignal::Int => SignalKind::interrupt(),
            StopSignal::Pwr => SignalKind::from_raw(libc::SIGPWR),
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Pwr => "SIGPWR",
        })
    }
}

/// Handlers for a set of stop signals. Create it early (before announcing readiness) so a signal
/// arriving during start-up is not lost to the default action.
pub struct StopSignals {
    handlers: Vec<(StopSignal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    pub fn install(which: &[StopSignal]) -> io::Result<Self> {
        let handlers = which
            .iter()
            .map(|s| signal(s.kind()).map(|h| (*s, h)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(StopSignals { handlers })
    }

    /// Resolves with the first of the installed signals to arrive.
    pub async fn recv(&mut self) -> StopSignal {
        let waits = self.handlers.iter_mut().map(|(which, handler)| {
            Box::pin(async move {
                handler.recv().await;
                *which
            })
        });
        if waits.len() == 0 {
            return std::future::pending().await;
        }
        let (which, _, _) = futures::future::select_all(waits).await;
        which
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receives_sigpwr_sent_to_self() {
        let mut signals =
            StopSignals::install(&[StopSignal::Term, StopSignal::Pwr]).expect("install");
        // SAFETY: raise() has no memory-safety preconditions; the handler installed above keeps
        // SIGPWR from taking its default action.
        unsafe { libc::raise(libc::SIGPWR) };
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), signals.recv())
            .await
            .expect("signal within 5 s");
        assert_eq!(got, StopSignal::Pwr);
    }
}
