//! One `/1.0/events` websocket message (tremplin §4, §9.1): the event, its operation or
//! lifecycle metadata, instance names, timestamps, and tremplin's classification.
#![no_main]

use crostini_lxd::{parse_rfc3339_nanos, Event, OperationState};
use libfuzzer_sys::fuzz_target;
use tremplin::events::{classify, LifecycleAction};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_rfc3339_nanos(&text);
    let Ok(event) = Event::parse(&text) else {
        return;
    };
    let _ = parse_rfc3339_nanos(&event.timestamp);
    if let Some(op) = event.operation() {
        assert_eq!(event.kind, "operation");
        let _ = op.updated_at_nanos();
        let final_state = op.is_final();
        assert_eq!(
            final_state,
            matches!(
                op.state(),
                OperationState::Success | OperationState::Failure | OperationState::Cancelled
            )
        );
        for name in op.instance_resources() {
            assert!(!name.is_empty() && !name.contains(['/', '?']), "{name:?}");
        }
        let failed = matches!(
            op.state(),
            OperationState::Failure | OperationState::Cancelled
        );
        assert_eq!(op.clone().into_result().is_err(), failed);
    }
    if let Some(lifecycle) = event.lifecycle() {
        assert_eq!(event.kind, "lifecycle");
        if let Some(name) = lifecycle.instance_name() {
            assert!(!name.is_empty() && !name.contains(['/', '?']), "{name:?}");
        }
        match classify(&lifecycle) {
            Some(LifecycleAction::Shutdown(name)) | Some(LifecycleAction::Deleted(name)) => {
                assert_eq!(Some(name.as_str()), lifecycle.instance_name());
            }
            None => {}
        }
    }
    // What parsed serializes back to an event that parses the same (metadata is kept as JSON).
    let json = serde_json::to_string(&event).expect("an event serializes");
    assert_eq!(Event::parse(&json).expect("reparses"), event);
});
