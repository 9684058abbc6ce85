//! The desktop's side of OpenUrl and OpenTerminal: a configured command, run without a shell.
//!
//! A command line is split into words once, when configured (whitespace separates words; single
//! and double quotes group them; a backslash escapes the next character). Placeholders are then
//! replaced word by word, so a value from the container is always one argument and never parsed
//! again: `{url}`, `{vm}`, `{container}`, `{user}`, `{ipv4}`, and `{params}`, which stands for
//! the terminal's parameters as separate words (zero or more). Without `{url}` the URL is added
//! as the last argument; without `{params}` the parameters are. The values are also in the
//! environment: `CROSTINI_VM`, `CROSTINI_CONTAINER`, `CROSTINI_USER`, `CROSTINI_IPV4`.
//!
//! The command runs detached (own process group, stdin/stdout null, stderr inherited), the spawn
//! bounded by [`SPAWN_TIMEOUT`]; the host does not wait for it to finish, only reaps it.

use std::time::Duration;

/// How long starting a handler may take before the call fails.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    words: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("unterminated quote in {0:?}")]
    Quote(String),
    #[error("empty command")]
    Empty,
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("starting {0} took longer than {SPAWN_TIMEOUT:?}")]
    Timeout(String),
}

/// Splits a command line into words (see the module documentation).
pub fn split_words(line: &str) -> Result<Vec<String>, HandlerError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| HandlerError::Quote(line.into()))?;
                word.get_or_insert_with(String::new).push(next);
            }
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(HandlerError::Quote(line.into()));
    }
    words.extend(word);
    Ok(words)
}

impl std::str::FromStr for Command {
    type Err = HandlerError;

    fn from_str(line: &str) -> Result<Command, HandlerError> {
        let words = split_words(line)?;
        if words.is_empty() {
            return Err(HandlerError::Empty);
        }
        Ok(Command { words })
    }
}

/// The values a handler's placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct Values {
    pub url: Option<String>,
    pub vm: String,
    pub container: String,
    pub user: String,
    pub ipv4: String,
    pub params: Vec<String>,
}

impl Command {
    /// The argv for `values`: placeholders replaced, the URL or parameters appended when the
    /// command names no place for them.
    pub fn argv(&self, values: &Values) -> Vec<String> {
        let mut argv = Vec::new();
        let mut placed_url = false;
        let mut placed_params = false;
        for word in &self.words {
            if word == "{params}" {
                argv.extend(values.params.iter().cloned());
                placed_params = true;
                continue;
            }
            if word.contains("{url}") {
                placed_url = true;
            }
            argv.push(
                word.replace("{vm}", &values.vm)
                    .replace("{container}", &values.container)
                    .replace("{user}", &values.user)
                    .replace("{ipv4}", &values.ipv4)
                    .replace("{url}", values.url.as_deref().unwrap_or("")),
            );
        }
        if let (false, Some(url)) = (placed_url, &values.url) {
            argv.push(url.clone());
        }
        if !placed_params {
            argv.extend(values.params.iter().cloned());
        }
        argv
    }

    /// Starts the command for `values`, detached; returns once it started.
    pub async fn spawn(&self, values: &Values) -> Result<(), HandlerError> {
        let argv = self.argv(values);
        let program = argv[0].clone();
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&argv[1..])
            .env("CROSTINI_VM", &values.vm)
            .env("CROSTINI_CONTAINER", &values.container)
            .env("CROSTINI_USER", &values.user)
            .env("CROSTINI_IPV4", &values.ipv4)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let spawned = tokio::time::timeout(SPAWN_TIMEOUT, async { command.spawn() }).await;
        let mut child = match spawned {
            Err(_) => return Err(HandlerError::Timeout(program)),
            Ok(Err(source)) => return Err(HandlerError::Spawn { program, source }),
            Ok(Ok(child)) => child,
        };
        // Reaped in the background; the host does not wait for the desktop's program.
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if !status.success() => {
                    tracing::info!(%program, %status, "handler exited")
                }
                Err(e) => tracing::warn!(%program, error = %e, "waiting for handler"),
                Ok(_) => {}
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_whitespace_with_quotes_and_escapes() {
        let w = split_words(r#"a  'b c' "d \"e\"" f\ g ''"#).expect("split");
        assert_eq!(w, ["a", "b c", "d \"e\"", "f g", ""]);
        assert!(split_words("a 'b").is_err());
        assert!("   ".parse::<Command>().is_err());
    }

    #[test]
    fn placeholders_are_replaced_per_word_and_values_are_never_resplit() {
        let cmd: Command = "term -e lxc exec {container} -- sudo -iu {user} {params}"
            .parse()
            .expect("parse");
        let values = Values {
            container: "penguin".into(),
            user: "me".into(),
            params: vec!["vim".into(), "a b; rm -rf /".into()],
            ..Values::default()
        };
        assert_eq!(
            cmd.argv(&values),
            [
                "term",
                "-e",
                "lxc",
                "exec",
                "penguin",
                "--",
                "sudo",
                "-iu",
                "me",
                "vim",
                "a b; rm -rf /"
            ]
        );
        let opener: Command = "xdg-open".parse().expect("parse");
        let url = Values {
            url: Some("http://x y".into()),
            ..Values::default()
        };
        assert_eq!(opener.argv(&url), ["xdg-open", "http://x y"]);
        let placed: Command = "open --url={url} --new".parse().expect("parse");
        assert_eq!(placed.argv(&url), ["open", "--url=http://x y", "--new"]);
    }
}
