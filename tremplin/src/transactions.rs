//! The export/import transaction map (§12): one entry per container name, shared by export and
//! import, states in progress / pending cancel.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crostini_lxd::CancelToken;

/// A running export or import.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub name: String,
    pub cancel: CancelToken,
    map: Arc<Mutex<HashMap<String, CancelToken>>>,
}

impl Transaction {
    /// True once a cancel was queued.
    pub fn cancel_pending(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Removes the entry (before the final report: see [`release_then_report`]).
    pub fn finish(self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.name);
    }
}

/// Frees a busy slot (`release`: a transaction's [`Transaction::finish`], a dropped creation
/// guard), then sends the final status (`report`).
///
/// The order matters (issue 9, defect 7): a host may start the next operation the moment it
/// sees a final status, so the slot must already be free then. `report` is a future, so
/// nothing of it runs before `release`.
pub async fn release_then_report<R: Future>(release: impl FnOnce(), report: R) -> R::Output {
    release();
    report.await
}

/// The map itself.
#[derive(Debug, Default, Clone)]
pub struct Transactions {
    map: Arc<Mutex<HashMap<String, CancelToken>>>,
}

impl Transactions {
    /// Starts a transaction for `name`; `None` when one exists.
    pub fn begin(&self, name: &str) -> Option<Transaction> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(name) {
            return None;
        }
        let cancel = CancelToken::new();
        map.insert(name.to_string(), cancel.clone());
        Some(Transaction {
            name: name.to_string(),
            cancel,
            map: self.map.clone(),
        })
    }

    /// Queues a cancel; false when there is no transaction for `name`.
    pub fn cancel(&self, name: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_collides_until_finished_and_cancel_is_shared() {
        let t = Transactions::default();
        let a = t.begin("penguin").expect("first");
        assert!(t.begin("penguin").is_none(), "collision");
        let b = t.begin("other").expect("other name in parallel");
        assert!(!a.cancel_pending());
        assert!(t.cancel("penguin"));
        assert!(a.cancel_pending());
        assert!(!b.cancel_pending());
        a.finish();
        assert!(!t.cancel("penguin"), "no transaction after finish");
        assert!(t.begin("penguin").is_some());
    }

    /// Defect 7: when the final status reaches the host, the next export/import of the same
    /// container must be accepted.
    #[tokio::test]
    async fn slot_is_free_when_the_final_status_is_sent() {
        let t = Transactions::default();
        let tx = t.begin("penguin").expect("first");
        let reporter = async {
            // What a host does on a final status: start the next operation.
            t.begin("penguin").map(Transaction::finish).is_some()
        };
        assert!(
            release_then_report(|| tx.finish(), reporter).await,
            "the transaction slot was still taken when the final status went out"
        );
    }
}
