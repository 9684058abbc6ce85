//! The export/import transaction map (§12): one entry per container name, shared by export and
//! import, states in progress / pending cancel.

use std::collections::HashMap;
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

    /// Removes the entry (after the final report).
    pub fn finish(self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.name);
    }
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
}
