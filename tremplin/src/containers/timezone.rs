//! SetTimezone (§8.8): `timedatectl set-timezone` in running containers, else the
//! `environment.TZ` fallback.

use std::time::Duration;

use crostini_lxd::{Client, ExecRequest};
use crostini_proto::vm_tools::tremplin as pb;

use super::{check_container_name, wait_op};
use crate::daemon::Daemon;

/// Reason when LXD is not running (§8.8 step 1).
pub const TZ_BEFORE_LXD: &str = "Ignoring SetTimezone request before LXD is running";
const TZ_KEY: &str = "environment.TZ";

impl Daemon {
    pub async fn set_timezone(&self, request: pb::SetTimezoneRequest) -> pb::SetTimezoneResponse {
        let Some(client) = self.lxd() else {
            return pb::SetTimezoneResponse {
                successes: 0,
                failure_reasons: vec![TZ_BEFORE_LXD.to_string()],
            };
        };
        let mut response = pb::SetTimezoneResponse::default();
        for name in &request.container_names {
            match set_one(
                &client,
                name,
                &request.timezone_name,
                &request.posix_tz_string,
            )
            .await
            {
                Ok(()) => response.successes += 1,
                Err(reason) => response.failure_reasons.push(reason),
            }
        }
        response
    }
}

async fn set_one(client: &Client, name: &str, tz_name: &str, posix: &str) -> Result<(), String> {
    if let Err(e) = check_container_name(name) {
        return Err(format!("could not get container {name}: {e}"));
    }
    let (instance, _) = client
        .instance(name)
        .await
        .map_err(|e| format!("could not get container {name}: {e}"))?;
    let mut errors = Vec::new();
    let exec = ExecRequest::new(&["timedatectl", "set-timezone", tz_name])
        .timeout(Duration::from_secs(30));
    match client.exec(name, &exec).await {
        Ok(out) if out.exit_code == 0 => {
            if instance.config.contains_key(TZ_KEY) {
                let mut put = instance.writable();
                put.config.remove(TZ_KEY);
                // Not waited, errors ignored (§8.8).
                if let Err(e) = client.update_instance(name, &put, None).await {
                    tracing::debug!("removing {TZ_KEY} from {name}: {e}");
                }
            }
            return Ok(());
        }
        Ok(out) => errors.push(format!(
            "setting timezone by name failed: (error: {}, return code: {})",
            out.stderr_str().trim(),
            out.exit_code
        )),
        Err(e) => errors.push(format!(
            "setting timezone by name failed: (error: {e}, return code: -1)"
        )),
    }
    if posix.is_empty() {
        errors.push(
            "setting timezone by TZ variable failed: no POSIX TZ string provided".to_string(),
        );
    } else {
        let mut put = instance.writable();
        put.config.insert(TZ_KEY.to_string(), posix.to_string());
        let result = async {
            let op = client.update_instance(name, &put, None).await?;
            wait_op(client, &op).await
        }
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) => errors.push(format!("setting timezone by TZ variable failed: {e}")),
        }
    }
    Err(format!("container {name}: {}", errors.join(", ")))
}
