//! Failures of PackageKit operations and their texts (garcon-service §5.4: general errors read
//! `"<what failed>(error=<dbus error name>: <message>)"`).

use std::time::Duration;

/// A D-Bus level failure: an error reply, or a failure to get any reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct DbusError {
    /// D-Bus error name, e.g. `org.freedesktop.DBus.Error.ServiceUnknown`.
    pub name: String,
    /// The error message (may be empty).
    pub message: String,
}

/// Error name used when a call got no reply in time (what libdbus reports on its timeout).
pub const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
/// Error name used for local failures that carry no D-Bus error name.
pub const FAILED: &str = "org.freedesktop.DBus.Error.Failed";

impl DbusError {
    /// The call got no reply within `timeout`.
    pub fn no_reply(timeout: Duration) -> Self {
        Self {
            name: NO_REPLY.to_owned(),
            message: format!("no reply within {} ms", timeout.as_millis()),
        }
    }
}

impl From<zbus::Error> for DbusError {
    fn from(err: zbus::Error) -> Self {
        match err {
            zbus::Error::MethodError(name, message, _) => Self {
                name: name.as_str().to_owned(),
                message: message.unwrap_or_default(),
            },
            zbus::Error::FDO(fdo) => {
                let name = zbus::DBusError::name(fdo.as_ref()).as_str().to_owned();
                let message = zbus::DBusError::description(fdo.as_ref())
                    .unwrap_or_default()
                    .to_owned();
                Self { name, message }
            }
            other => Self {
                name: FAILED.to_owned(),
                message: other.to_string(),
            },
        }
    }
}

/// A "general error": the operation could not be carried out at the D-Bus level, as opposed to
/// PackageKit reporting `ErrorCode` or a failed exit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneralError {
    /// `CreateTransaction` failed (e.g. ServiceUnknown when PackageKit is neither running nor
    /// activatable).
    #[error("Failure calling CreateTransaction(error={0})")]
    CreateTransaction(DbusError),
    /// Subscribing to the transaction's signals or reading its properties failed.
    #[error("Failure subscribing to the transaction signals(error={0})")]
    Subscribe(DbusError),
    /// PackageKit rejected (or never answered) the request method.
    #[error("Failure executing the request in the transaction(error={0})")]
    Request(DbusError),
    /// The daemon lost its bus name while the transaction was in flight.
    #[error("PackageKit D-Bus service died, abort operation")]
    ServiceDied,
    /// The transaction did not finish within the watchdog time.
    #[error("PackageKit transaction did not finish within {} s, abort operation", .0.as_secs())]
    TransactionTimeout(Duration),
    /// The bus connection itself failed.
    #[error("D-Bus connection to PackageKit lost(error={0})")]
    ConnectionLost(DbusError),
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// PackageKit reported `ErrorCode(code, details)`; the text is the details.
    #[error("{details}")]
    PackageKit {
        /// `PkErrorEnum` value.
        code: u32,
        /// PackageKit's (usually the backend's) message.
        details: String,
    },
    /// The transaction finished with a non-success exit code and no `ErrorCode`.
    #[error("{operation} finished with exit code {exit}")]
    Exit {
        /// The PackageKit method.
        operation: &'static str,
        /// `PkExitEnum` value.
        exit: u32,
    },
    /// D-Bus level failure.
    #[error(transparent)]
    General(#[from] GeneralError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_unknown() -> DbusError {
        DbusError {
            name: "org.freedesktop.DBus.Error.ServiceUnknown".into(),
            message: "The name is not activatable".into(),
        }
    }

    #[test]
    fn create_transaction_text_follows_the_reference_format() {
        assert_eq!(
            GeneralError::CreateTransaction(service_unknown()).to_string(),
            "Failure calling CreateTransaction(error=org.freedesktop.DBus.Error.ServiceUnknown: \
             The name is not activatable)"
        );
    }

    #[test]
    fn request_text_follows_the_reference_format() {
        let err = GeneralError::Request(DbusError {
            name: "org.freedesktop.PackageKit.Transaction.NoSuchFile".into(),
            message: "/tmp/x.txt not found or unsupported".into(),
        });
        assert_eq!(
            err.to_string(),
            "Failure executing the request in the transaction(error=\
             org.freedesktop.PackageKit.Transaction.NoSuchFile: /tmp/x.txt not found or unsupported)"
        );
    }

    #[test]
    fn service_died_text_is_the_reference_text() {
        assert_eq!(
            Failure::from(GeneralError::ServiceDied).to_string(),
            "PackageKit D-Bus service died, abort operation"
        );
    }

    #[test]
    fn package_kit_failure_text_is_the_details() {
        let failure = Failure::PackageKit {
            code: 5,
            details: "Could not read meta data".into(),
        };
        assert_eq!(failure.to_string(), "Could not read meta data");
    }

    #[test]
    fn no_reply_names_the_timeout() {
        let err = DbusError::no_reply(Duration::from_secs(25));
        assert_eq!(
            err.to_string(),
            "org.freedesktop.DBus.Error.NoReply: no reply within 25000 ms"
        );
    }
}
