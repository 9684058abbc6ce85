//! `--metrics name=value[,name=value…]` parsing (garcon-host.md §13).

/// A `--metrics` argument that is rejected before the rpc (exit 255).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricsError {
    #[error("--metrics needs an argument name=value[,name=value...]")]
    MissingArgument,
    #[error("--metrics: {pair:?} is not name=value with both parts non-empty")]
    BadPair { pair: String },
    #[error("--metrics: value {value:?} of {name:?} is not an unsigned 64-bit decimal number")]
    BadValue { name: String, value: String },
}

/// Splits on `,`, then each pair on its first `=`. Values are unsigned decimal (no sign).
pub fn parse_metrics(arg: &str) -> Result<Vec<(String, u64)>, MetricsError> {
    arg.split(',')
        .map(|pair| {
            let bad_pair = || MetricsError::BadPair {
                pair: pair.to_string(),
            };
            let (name, value) = pair.split_once('=').ok_or_else(bad_pair)?;
            if name.is_empty() || value.is_empty() {
                return Err(bad_pair());
            }
            let bad_value = || MetricsError::BadValue {
                name: name.to_string(),
                value: value.to_string(),
            };
            // `u64::from_str` accepts a leading `+`; upstream's StringToUint64 does not.
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_value());
            }
            let value = value.parse::<u64>().map_err(|_| bad_value())?;
            Ok((name.to_string(), value))
        })
        .collect()
}
