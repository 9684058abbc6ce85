//! Streaming uploads (file → request body) and downloads (response body → file) with
//! progress reporting, cancellation and inactivity timeouts.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::cancel::CancelToken;
use crate::client::{read_response_capped, what, Body, Client, RawResponse, MAX_BUFFERED_BODY};
use crate::error::{LxdError, Result};

/// Progress of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes sent (upload) or received (download) so far.
    pub done: u64,
    /// Expected total when known.
    pub total: Option<u64>,
}

impl Transfer {
    /// Integer percentage (0..=100) when the total is known and non-zero.
    pub fn percent(&self) -> Option<u32> {
        match self.total {
            Some(t) if t > 0 => Some((self.done.min(t) * 100 / t) as u32),
            Some(_) => Some(100),
            None => None,
        }
    }
}

const CHUNK: usize = 256 * 1024;

/// One piece of an upload body.
pub(crate) enum Part {
    Bytes(Bytes),
    File(PathBuf),
}

enum Source {
    Bytes(Bytes),
    File(tokio::fs::File),
}

struct UploadState {
    parts: VecDeque<Part>,
    current: Option<Source>,
    sent: u64,
    tx: watch::Sender<u64>,
    cancel: CancelToken,
}

fn upload_body(parts: Vec<Part>, tx: watch::Sender<u64>, cancel: CancelToken) -> Body {
    let state = UploadState {
        parts: parts.into(),
        current: None,
        sent: 0,
        tx,
        cancel,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.cancel.is_cancelled() {
                return Some((
                    Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "upload cancelled",
                    )),
                    st,
                ));
            }
            match st.current.take() {
                None => match st.parts.pop_front()? {
                    Part::Bytes(b) => st.current = Some(Source::Bytes(b)),
                    Part::File(p) => match tokio::fs::File::open(&p).await {
                        Ok(f) => st.current = Some(Source::File(f)),
                        Err(e) => {
                            let e =
                                io::Error::new(e.kind(), format!("opening {}: {e}", p.display()));
                            return Some((Err(e), st));
                        }
                    },
                },
                Some(Source::Bytes(b)) => {
                    if b.is_empty() {
                        continue;
                    }
                    st.sent += b.len() as u64;
                    st.tx.send_replace(st.sent);
                    return Some((Ok(Frame::data(b)), st));
                }
                Some(Source::File(mut f)) => {
                    let mut buf = vec![0u8; CHUNK];
                    match f.read(&mut buf).await {
                        Ok(0) => {}
                        Ok(n) => {
                            buf.truncate(n);
                            st.sent += n as u64;
                            st.tx.send_replace(st.sent);
                            st.current = Some(Source::File(f));
                            return Some((Ok(Frame::data(Bytes::from(buf))), st));
                        }
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            }
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// Total size of the parts (files are stat'ed).
pub(crate) async fn parts_len(parts: &[Part], what: &str) -> Result<u64> {
    let mut total = 0u64;
    for p in parts {
        total += match p {
            Part::Bytes(b) => b.len() as u64,
            Part::File(path) => tokio::fs::metadata(path)
                .await
                .map_err(|e| LxdError::io(format!("{what}: stat {}", path.display()), e))?
                .len(),
        };
    }
    Ok(total)
}

impl Client {
    /// Streams `parts` as the request body. `progress` is called (in the caller's task)
    /// whenever more bytes were handed to the socket. Times out when nothing moves for
    /// the request timeout. Cancelling drops the connection.
    pub(crate) async fn upload<F: FnMut(Transfer)>(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        parts: Vec<Part>,
        mut progress: F,
        cancel: &CancelToken,
    ) -> Result<RawResponse> {
        let w = what(&method, path);
        let total = parts_len(&parts, &w).await?;
        let mut headers = headers.to_vec();
        headers.push(("content-length", total.to_string()));
        let (tx, mut rx) = watch::channel(0u64);
        let body = upload_body(parts, tx, cancel.clone());
        let fut = async {
            let resp = self.send(method, path, &headers, body).await?;
            read_response_capped(resp, MAX_BUFFERED_BODY, &w).await
        };
        tokio::pin!(fut);
        let idle = self.timeout();
        let mut sender_alive = true;
        let mut last_reported = None;
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    return Err(LxdError::Cancelled { what: w.clone(), message: String::new() });
                }
                res = &mut fut => {
                    if cancel.is_cancelled() {
                        return Err(LxdError::Cancelled { what: w.clone(), message: String::new() });
                    }
                    let done = *rx.borrow();
                    if last_reported != Some(done) {
                        progress(Transfer { done, total: Some(total) });
                    }
                    return res;
                }
                changed = rx.changed(), if sender_alive => {
                    match changed {
                        Ok(()) => {
                            let done = *rx.borrow_and_update();
                            if last_reported != Some(done) {
                                last_reported = Some(done);
                                progress(Transfer { done, total: Some(total) });
                            }
                            timer.as_mut().reset(tokio::time::Instant::now() + idle);
                        }
                        Err(_) => sender_alive = false,
                    }
                }
                _ = &mut timer => {
                    return Err(LxdError::timeout(format!("{w} (no progress)"), idle));
                }
            }
        }
    }

    /// Streams the body of `GET path` into `dest` (via `<dest>.partial`, renamed on
    /// success; removed on failure or cancel). Returns the number of bytes written.
    pub(crate) async fn download_to_file<F: FnMut(Transfer)>(
        &self,
        path: &str,
        dest: &Path,
        mut progress: F,
        cancel: &CancelToken,
    ) -> Result<u64> {
        let w = what(&Method::GET, path);
        let partial = partial_path(dest);
        let result = async {
            let idle = self.timeout();
            let resp = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(LxdError::Cancelled { what: w.clone(), message: String::new() }),
                r = tokio::time::timeout(idle, self.send(Method::GET, path, &[], crate::client::empty_body())) => match r {
                    Err(_) => return Err(LxdError::timeout(w.clone(), idle)),
                    Ok(r) => r?,
                },
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            if !status.is_success() {
                let raw = tokio::time::timeout(idle, read_response_capped(resp, MAX_BUFFERED_BODY, &w))
                    .await
                    .map_err(|_| LxdError::timeout(w.clone(), idle))??;
                crate::client::parse_envelope(&raw, &w)?;
                return Err(LxdError::protocol(&w, format!("HTTP {status}")));
            }
            let total = headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| LxdError::io(format!("{w}: creating {}", partial.display()), e))?;
            let mut body = resp.into_body().into_data_stream();
            let mut done = 0u64;
            progress(Transfer { done, total });
            loop {
                let next = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(LxdError::Cancelled { what: w.clone(), message: String::new() }),
                    n = tokio::time::timeout(idle, body.next()) => match n {
                        Err(_) => return Err(LxdError::timeout(format!("{w} (no data)"), idle)),
                        Ok(n) => n,
                    },
                };
                match next {
                    None => break,
                    Some(Err(e)) => {
                        return Err(LxdError::protocol(&w, format!("reading body: {e}")))
                    }
                    Some(Ok(chunk)) => {
                        file.write_all(&chunk).await.map_err(|e| {
                            LxdError::io(format!("{w}: writing {}", partial.display()), e)
                        })?;
                        done += chunk.len() as u64;
                        progress(Transfer { done, total });
                    }
                }
            }
            if let Some(t) = total {
                if t != done {
                    return Err(LxdError::protocol(
                        &w,
                        format!("body ended after {done} of {t} bytes"),
                    ));
                }
            }
            file.flush()
                .await
                .and(file.sync_all().await)
                .map_err(|e| LxdError::io(format!("{w}: flushing {}", partial.display()), e))?;
            drop(file);
            tokio::fs::rename(&partial, dest).await.map_err(|e| {
                LxdError::io(
                    format!("{w}: renaming {} to {}", partial.display(), dest.display()),
                    e,
                )
            })?;
            Ok(done)
        }
        .await;
        if result.is_err() {
            match tokio::fs::remove_file(&partial).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("could not remove {}: {e}", partial.display()),
            }
        }
        result
    }
}

/// `<dest>.partial`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_os_string();
    s.push(".partial");
    PathBuf::from(s)
}

/// Builds a `multipart/form-data` body of named file parts; returns (content type, parts).
pub(crate) fn multipart(files: &[(&str, &str, &Path)], boundary: &str) -> (String, Vec<Part>) {
    let mut parts = Vec::new();
    for (i, (field, filename, path)) in files.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        let filename = filename.replace(['"', '\r', '\n'], "_");
        parts.push(Part::Bytes(Bytes::from(format!(
            "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ))));
        parts.push(Part::File(path.to_path_buf()));
    }
    parts.push(Part::Bytes(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    (format!("multipart/form-data; boundary={boundary}"), parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_bounded() {
        let t = |done, total| Transfer { done, total };
        assert_eq!(t(0, Some(10)).percent(), Some(0));
        assert_eq!(t(5, Some(10)).percent(), Some(50));
        assert_eq!(t(15, Some(10)).percent(), Some(100));
        assert_eq!(t(0, Some(0)).percent(), Some(100));
        assert_eq!(t(3, None).percent(), None);
    }

    #[test]
    fn partial_path_appends_suffix() {
        assert_eq!(
            partial_path(Path::new("/tmp/x.tar.gz")),
            PathBuf::from("/tmp/x.tar.gz.partial")
        );
    }

    #[tokio::test]
    async fn upload_body_streams_parts_in_order_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![7u8; CHUNK + 10]).unwrap();
        let (tx, rx) = watch::channel(0);
        let body = upload_body(
            vec![
                Part::Bytes(Bytes::from_static(b"head")),
                Part::File(f.clone()),
                Part::Bytes(Bytes::from_static(b"tail")),
            ],
            tx,
            CancelToken::new(),
        );
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 8 + CHUNK + 10);
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[all.len() - 4..], b"tail");
        assert_eq!(*rx.borrow(), all.len() as u64);
    }

    #[tokio::test]
    async fn upload_body_stops_when_cancelled() {
        let token = CancelToken::new();
        token.cancel();
        let (tx, _rx) = watch::channel(0);
        let body = upload_body(vec![Part::Bytes(Bytes::from_static(b"x"))], tx, token);
        assert!(body.collect().await.is_err());
    }

    #[tokio::test]
    async fn multipart_layout() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"META").unwrap();
        std::fs::write(&b, b"ROOT").unwrap();
        let (ct, parts) = multipart(
            &[("metadata", "meta.tar", &a), ("rootfs", "root.sqfs", &b)],
            "BND",
        );
        assert_eq!(ct, "multipart/form-data; boundary=BND");
        let total = parts_len(&parts, "t").await.unwrap();
        let (tx, _rx) = watch::channel(0);
        let all = upload_body(parts, tx, CancelToken::new())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(all.len() as u64, total);
        let text = String::from_utf8(all.to_vec()).unwrap();
        assert_eq!(
            text,
            "--BND\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta.tar\"\r\nContent-Type: application/octet-stream\r\n\r\nMETA\r\n--BND\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"root.sqfs\"\r\nContent-Type: application/octet-stream\r\n\r\nROOT\r\n--BND--\r\n"
        );
    }
}
