//! A minimal hand-rolled HTTP/2 client for hostile-input tests: sends one gRPC request whose
//! body bytes the test chooses (invalid UTF-8, wrong wire types, lying length prefixes), which
//! no typed client can produce, and classifies what comes back. Also raw byte writers for
//! garbage on the socket. Shared by the garcon and tremplin `hostile_input` tests (included
//! with `#[path]`; it uses std and tokio only).
//!
//! Only what those tests need: HPACK literals without indexing or Huffman on the way out, frame
//! headers on the way in (header blocks are not decoded), bodies under one 16 KiB DATA frame.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// How the server answered the raw request on stream 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawReply {
    /// One HEADERS frame with END_STREAM and no DATA: a gRPC error (trailers-only response).
    TrailersOnly,
    /// Headers, `bytes` of DATA, then trailers: a reply message (gRPC OK).
    Message { bytes: usize },
    /// RST_STREAM with this HTTP/2 error code.
    Reset(u32),
    /// GOAWAY with this HTTP/2 error code before stream 1 finished.
    GoAway(u32),
    /// The connection closed before stream 1 finished.
    Closed,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127, "short headers only");
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// A gRPC length-prefixed message: flag byte, big-endian length, bytes.
pub fn grpc_frame(compressed: bool, declared_len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A well-formed gRPC frame around `message`.
pub fn grpc_message(message: &[u8]) -> Vec<u8> {
    grpc_frame(false, message.len() as u32, message)
}

/// Sends one unary gRPC request to `path` with `data` as the whole request body (already
/// length-prefixed, see [`grpc_frame`]) and waits up to `within` for the outcome.
pub async fn unary(socket: &Path, path: &str, data: &[u8], within: Duration) -> RawReply {
    assert!(data.len() <= 16_384, "one DATA frame only");
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    let mut headers = Vec::new();
    hpack_literal(&mut headers, ":method", "POST");
    hpack_literal(&mut headers, ":scheme", "http");
    hpack_literal(&mut headers, ":path", path);
    hpack_literal(&mut headers, ":authority", "hostile.invalid");
    hpack_literal(&mut headers, "content-type", "application/grpc");
    hpack_literal(&mut headers, "te", "trailers");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &headers));
    out.extend(frame(DATA, END_STREAM, 1, data));
    stream.write_all(&out).await.expect("write request");
    match tokio::time::timeout(within, read_reply(&mut stream)).await {
        Ok(reply) => reply,
        Err(_) => panic!("no answer to the raw request on {path} within {within:?}"),
    }
}

async fn read_reply(stream: &mut UnixStream) -> RawReply {
    let mut data_bytes = 0usize;
    let mut saw_headers = false;
    loop {
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).await.is_err() {
            return RawReply::Closed;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            return RawReply::Closed;
        }
        let code_at = |offset: usize| {
            payload
                .get(offset..offset + 4)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        match (kind, id) {
            (SETTINGS, 0) if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            (GOAWAY, 0) => return RawReply::GoAway(code_at(4)),
            (RST_STREAM, 1) => return RawReply::Reset(code_at(0)),
            (DATA, 1) => data_bytes += len,
            (HEADERS, 1) if flags & END_STREAM != 0 => {
                return if saw_headers {
                    RawReply::Message { bytes: data_bytes }
                } else {
                    RawReply::TrailersOnly
                };
            }
            (HEADERS, 1) => saw_headers = true,
            _ => {}
        }
    }
}

/// Writes `bytes` on a fresh connection, then reads until the server closes it; returns true
/// when it did so within `within` (EOF or a reset, after whatever it sent first).
pub async fn server_closes_after(socket: &Path, bytes: &[u8], within: Duration) -> bool {
    let mut stream = UnixStream::connect(socket).await.expect("connect");
    // The server may close before everything is written: a failed write is an answer too.
    let _ = stream.write_all(bytes).await;
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, drain).await.is_ok()
}

/// Protobuf encoding helpers for hand-made request bodies.
pub mod pb {
    /// A varint.
    pub fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// Field `number` with wire type 2 (length-delimited) holding `bytes`.
    pub fn len_field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(number << 3 | 2));
        out.extend(varint(bytes.len() as u64));
        out.extend_from_slice(bytes);
        out
    }

    /// Field `number` with wire type 0 (varint).
    pub fn varint_field(number: u32, value: u64) -> Vec<u8> {
        let mut out = varint(u64::from(number << 3));
        out.extend(varint(value));
        out
    }
}

/// `n` connections that each sent half an HTTP/2 preface, to hold open.
pub async fn half_open(socket: &Path, n: usize) -> Vec<UnixStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = UnixStream::connect(socket).await.expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        held.push(s);
    }
    held
}

/// `len` deterministic pseudo-random bytes (xorshift64).
pub fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
