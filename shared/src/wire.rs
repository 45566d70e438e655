//! The store channel between the enclave and the parent: versioned, typed, bounded frames.
//!
//! The enclave asks the parent to persist sealed records and audit lines, and to hand them
//! back at unseal. The parent is untrusted: it sees only opaque sealed bytes, and everything
//! it sends back is checked by the enclave when it opens the records. This module only
//! frames and types the messages; it trusts no length, tag or byte it decodes.

/// Version 1 of the store channel.
///
/// A frame is the magic `b"EKMS"` (4 bytes), the version `1u8`, the body length as a
/// big-endian `u32`, then the body: exactly one CBOR value (serde_cbor, RFC 8949), nothing
/// after it. The body length is checked against [`MAX_FRAME_LEN`](v1::MAX_FRAME_LEN) before
/// anything is allocated. Each [`Request`](v1::Request) gets exactly one
/// [`Response`](v1::Response), in order, on the same connection; a client may pipeline
/// several requests before reading the responses.
pub mod v1 {
    use std::io;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};
    use thiserror::Error;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// The first four bytes of every frame.
    pub const MAGIC: [u8; 4] = *b"EKMS";

    /// The version byte after the magic.
    pub const VERSION: u8 = 1;

    /// Magic, version and body length.
    pub const HEADER_LEN: usize = 4 + 1 + 4;

    /// The largest body (the CBOR value, header not included) either side sends or accepts.
    pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

    /// The key of a sealed record: its kind (key, alias, principal, ...) and its id.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub struct RecordKey {
        /// What the record is; only the enclave gives it meaning.
        pub kind: u8,
        /// Which one; opaque to the parent.
        #[serde(with = "serde_bytes")]
        pub id: Vec<u8>,
    }

    /// A sealed record as the parent stores it: opaque bytes under a key.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Record {
        /// Where it is stored.
        pub key: RecordKey,
        /// The sealed bytes; the parent never decodes them.
        #[serde(with = "serde_bytes")]
        pub sealed: Vec<u8>,
    }

    /// What the enclave asks of the parent.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[non_exhaustive]
    pub enum Request {
        /// Apply atomically and durably (fsync) before answering `Committed`.
        Commit {
            /// Echoed in `Committed`, so the enclave can match acknowledgements.
            seq: u64,
            /// The commit whose state this one was built on: a store that several enclaves
            /// share applies it only if that is still its last commit (compare-and-swap), so
            /// two enclaves never both commit on the same base. `None`: unconditional, and not
            /// a commit of the state (the deployment record).
            #[serde(default)]
            base: Option<u64>,
            /// Records to insert or overwrite.
            puts: Vec<Record>,
            /// Records to remove (absent ones are ignored). Applied after `puts`.
            deletes: Vec<RecordKey>,
            /// Opaque lines, appended to `<data-dir>/audit.jsonl` in the same durable step;
            /// may be empty. Each is written followed by `\n`, so none may contain `\n`.
            audit: Vec<serde_bytes::ByteBuf>,
        },
        /// Page through all records in (kind, id) order, strictly after `after`.
        Load {
            /// The last key of the previous page; `None` for the first page.
            after: Option<RecordKey>,
            /// The most records wanted in this page; the parent may return fewer.
            limit: u32,
        },
        /// Answered with `Pong`.
        Ping,
        /// From now on, answers the enclave frames for the relay with this session (see
        /// [`crate::release`]) are released as this connection's commits become durable; when
        /// a commit fails or the connection ends, the answers still held are dropped. Answered
        /// with `Holding`.
        Hold {
            /// A number the enclave chose at random for this store channel.
            session: u64,
        },
        /// The store's last commit that changed records, as the store itself has it now (not
        /// as this parent last wrote it): a member polls it to learn of other members'
        /// commits. Answered with `Head`.
        Head,
        /// The enclave's aggregates for the parent's `/metrics` and `/readyz`, sent every few
        /// seconds on a store connection of their own (never the committer's, whose answers
        /// come in order). Answered with `MetricsTaken`, or `Error` when the parent finds them
        /// out of bounds ([`EnclaveMetrics::check`]).
        Metrics(EnclaveMetrics),
        /// The named records as they stand in one snapshot of the store: a member that learns
        /// of another member's commit reads the new root, then only the pages, buckets and
        /// records whose generations moved, all in the snapshot its first `Fetch` was answered
        /// from. Answered with `Fetched`. The enclave verifies every record it is given, and
        /// takes nothing on the parent's word: neither the snapshot nor that a record is absent.
        Fetch {
            /// The snapshot a previous `Fetched` named; `None`: the store's newest state in
            /// which no commit is half applied.
            at: Option<u64>,
            /// The records wanted, at most [`MAX_FETCH_KEYS`].
            keys: Vec<RecordKey>,
        },
    }

    /// The most records one `Fetch` may name.
    pub const MAX_FETCH_KEYS: usize = 1024;

    /// The most series (label combinations) an [`EnclaveMetrics`] may carry in each of its
    /// lists: operations, error codes, key specs and states are all fixed sets in the enclave.
    pub const MAX_METRIC_SERIES: usize = 1024;

    /// The longest label value (an operation name, an AWS error code, a key spec or state).
    pub const MAX_METRIC_LABEL_LEN: usize = 64;

    /// The most histogram buckets per operation.
    pub const MAX_METRIC_BUCKETS: usize = 32;

    /// What an enclave tells its parent about itself: counts only, labelled by names from
    /// fixed sets (operation names from its operation table, AWS error codes from its error
    /// enum, key specs and states), never a key id, alias or principal. Counters run from the
    /// enclave's start (a restart resets them, as Prometheus expects of a counter).
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub struct EnclaveMetrics {
        /// No domain key: not initialized, or not unsealed yet.
        pub sealed: bool,
        /// Requests answered, by operation and code.
        pub requests: Vec<RequestCount>,
        /// Upper bounds (seconds) of the duration histograms' buckets, increasing; the last
        /// bucket (+Inf) is implied.
        pub duration_bounds: Vec<f64>,
        /// Request durations by operation.
        pub durations: Vec<DurationHistogram>,
        /// Keys held, by spec and state.
        pub keys: Vec<KeyCount>,
        /// Bytes of the memory budget in use (keys, aliases, grants, principals).
        pub memory_used_bytes: u64,
        /// The memory budget.
        pub memory_budget_bytes: u64,
        /// The `seq` of the last commit the store acknowledged, if any this boot.
        pub last_durable_commit: Option<u64>,
        /// Taking the store's state again after a failed session (a full audit disk, say):
        /// requests are refused meanwhile. Absent from older enclaves' reports.
        #[serde(default)]
        pub recovering: bool,
    }

    /// One `ekms_requests_total` series.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct RequestCount {
        /// The operation (`Encrypt`, `Ekms.Unseal`, `-` when none was recognised).
        pub operation: String,
        /// `200`, or the AWS error code (`NotFoundException`).
        pub code: String,
        /// Requests since the enclave started.
        pub count: u64,
    }

    /// One operation's duration histogram.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DurationHistogram {
        /// The operation.
        pub operation: String,
        /// Requests per bucket (not cumulative), one more than `duration_bounds` (+Inf last).
        pub buckets: Vec<u64>,
        /// The sum of the durations, seconds.
        pub sum_seconds: f64,
    }

    /// Keys of one spec in one state.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct KeyCount {
        /// `SYMMETRIC_DEFAULT`, `RSA_2048`, ...
        pub spec: String,
        /// `Enabled`, `Disabled`, `PendingDeletion`, ...
        pub state: String,
        /// How many.
        pub count: u64,
    }

    /// Why an [`EnclaveMetrics`] was refused.
    #[derive(Debug, Error, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum MetricsError {
        /// A list holds more than [`MAX_METRIC_SERIES`] entries, or the bounds more than
        /// [`MAX_METRIC_BUCKETS`].
        #[error("too many {what}: {count}")]
        TooMany {
            /// Which list.
            what: &'static str,
            /// Its length.
            count: usize,
        },
        /// A label value is empty, too long, or not of `[A-Za-z0-9_.-]`.
        #[error("bad label value in {what}")]
        BadLabel {
            /// Which list.
            what: &'static str,
        },
        /// Bounds not finite and increasing, or a histogram whose bucket count does not match.
        #[error("malformed duration histogram")]
        BadHistogram,
    }

    impl EnclaveMetrics {
        /// Checks the bounds a parent relies on before exporting these: list lengths, label
        /// values (so that nothing but a short name can reach a label), histogram shapes.
        ///
        /// # Errors
        /// The first bound broken ([`MetricsError`]).
        pub fn check(&self) -> Result<(), MetricsError> {
            fn label(value: &str, what: &'static str) -> Result<(), MetricsError> {
                let fine = !value.is_empty()
                    && value.len() <= MAX_METRIC_LABEL_LEN
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
                if fine {
                    Ok(())
                } else {
                    Err(MetricsError::BadLabel { what })
                }
            }
            fn count(what: &'static str, count: usize, max: usize) -> Result<(), MetricsError> {
                if count > max {
                    Err(MetricsError::TooMany { what, count })
                } else {
                    Ok(())
                }
            }
            count("requests", self.requests.len(), MAX_METRIC_SERIES)?;
            count("durations", self.durations.len(), MAX_METRIC_SERIES)?;
            count("keys", self.keys.len(), MAX_METRIC_SERIES)?;
            count(
                "duration bounds",
                self.duration_bounds.len(),
                MAX_METRIC_BUCKETS,
            )?;
            for request in &self.requests {
                label(&request.operation, "requests")?;
                label(&request.code, "requests")?;
            }
            for key in &self.keys {
                label(&key.spec, "keys")?;
                label(&key.state, "keys")?;
            }
            let increasing = self
                .duration_bounds
                .windows(2)
                .all(|pair| pair[0] < pair[1]);
            if !increasing || !self.duration_bounds.iter().all(|b| b.is_finite()) {
                return Err(MetricsError::BadHistogram);
            }
            for histogram in &self.durations {
                label(&histogram.operation, "durations")?;
                if histogram.buckets.len() != self.duration_bounds.len() + 1
                    || !histogram.sum_seconds.is_finite()
                {
                    return Err(MetricsError::BadHistogram);
                }
            }
            Ok(())
        }
    }

    /// What the parent answers, one per request, in request order.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[non_exhaustive]
    pub enum Response {
        /// The commit with this `seq` is durable.
        Committed {
            /// The `seq` of the request.
            seq: u64,
        },
        /// One page of a `Load`.
        Records {
            /// In (kind, id) order, all strictly after the request's `after`.
            records: Vec<Record>,
            /// No record follows the last one in `records`.
            done: bool,
        },
        /// The answer to `Ping`.
        Pong,
        /// The answer to `Hold`: the relay now holds answers of that session.
        Holding,
        /// The answer to `Head`.
        Head {
            /// The `seq` of the store's last commit that changed records; `None` from a store
            /// that does not track it (the embedded store, which has one writer).
            seq: Option<u64>,
        },
        /// The answer to `Metrics`: the parent took them.
        MetricsTaken,
        /// The answer to `Fetch`.
        Fetched {
            /// The snapshot read: pass it to the next `Fetch` of the same catch-up.
            at: u64,
            /// Those of the request's first `through` keys that exist in the snapshot, in the
            /// order asked.
            records: Vec<Record>,
            /// How many of the request's keys this answers: all of them, or fewer (at least
            /// one) when their records would not fit one frame; the enclave asks again for
            /// the rest.
            through: u32,
        },
        /// The request failed; for a `Commit`, nothing of it was applied.
        Error {
            /// Why, for logs.
            message: String,
        },
        /// The `Commit` was refused before any of it was applied, for a reason the store
        /// expects to clear (its audit log's disk is under the reserve): the enclave may take
        /// the store's state again and retry, rather than stop.
        Unavailable {
            /// Why, for logs.
            message: String,
        },
    }

    /// Why a frame could not be read, written or decoded.
    #[derive(Debug, Error)]
    #[non_exhaustive]
    pub enum WireError {
        /// Reading or writing the stream failed.
        #[error("store channel I/O failed")]
        Io(#[from] io::Error),
        /// The first four bytes are not `EKMS`.
        #[error("not a store-channel frame: magic {found:02x?}, expected \"EKMS\"")]
        BadMagic {
            /// The four bytes found.
            found: [u8; 4],
        },
        /// A version this side does not speak.
        #[error("unsupported store-channel version {found}, expected {VERSION}")]
        UnsupportedVersion {
            /// The version byte found.
            found: u8,
        },
        /// The body length exceeds [`MAX_FRAME_LEN`].
        #[error("frame body of {len} bytes exceeds the limit of {MAX_FRAME_LEN}")]
        TooLarge {
            /// The length announced (reading) or produced (writing).
            len: u64,
        },
        /// The input ended inside a frame.
        #[error("frame truncated: {needed} bytes needed, {available} available")]
        Truncated {
            /// Bytes the frame needs (header, or header plus body).
            needed: usize,
            /// Bytes there were.
            available: usize,
        },
        /// Bytes follow the CBOR value inside the body, or the frame inside the input.
        #[error("{count} trailing bytes after the frame's value")]
        TrailingBytes {
            /// How many.
            count: usize,
        },
        /// The body is not a valid CBOR encoding of the expected type.
        #[error("malformed frame body")]
        Decode(#[source] serde_cbor::Error),
        /// The value could not be encoded as CBOR.
        #[error("cannot encode frame body")]
        Encode(#[source] serde_cbor::Error),
    }

    /// Encodes `value` as one frame.
    ///
    /// # Errors
    ///
    /// [`WireError::Encode`] if serialization fails, [`WireError::TooLarge`] if the body would
    /// exceed [`MAX_FRAME_LEN`] (the peer would refuse it).
    pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
        let mut frame = Vec::with_capacity(HEADER_LEN + 64);
        frame.extend_from_slice(&MAGIC);
        frame.push(VERSION);
        frame.extend_from_slice(&[0; 4]);
        serde_cbor::to_writer(&mut frame, value).map_err(WireError::Encode)?;
        let body_len = frame.len() - HEADER_LEN;
        let len = u32::try_from(body_len)
            .ok()
            .filter(|_| body_len <= MAX_FRAME_LEN)
            .ok_or(WireError::TooLarge {
                len: body_len as u64,
            })?;
        frame[5..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(frame)
    }

    /// Decodes `input`, which must be exactly one frame.
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] if `input` ends early, [`WireError::TrailingBytes`] if
    /// anything follows the frame or the CBOR value in it, and the header and body errors of
    /// [`read_frame`].
    pub fn decode_frame<T: DeserializeOwned>(input: &[u8]) -> Result<T, WireError> {
        let Some(header) = input.first_chunk::<HEADER_LEN>() else {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                available: input.len(),
            });
        };
        let body_len = parse_header(header)?;
        let rest = &input[HEADER_LEN..];
        if rest.len() < body_len {
            return Err(WireError::Truncated {
                needed: HEADER_LEN + body_len,
                available: input.len(),
            });
        }
        if rest.len() > body_len {
            return Err(WireError::TrailingBytes {
                count: rest.len() - body_len,
            });
        }
        decode_body(rest)
    }

    /// Checks magic and version and returns the body length, checked against
    /// [`MAX_FRAME_LEN`].
    fn parse_header(header: &[u8; HEADER_LEN]) -> Result<usize, WireError> {
        let [m0, m1, m2, m3, version, l0, l1, l2, l3] = *header;
        let magic = [m0, m1, m2, m3];
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        if version != VERSION {
            return Err(WireError::UnsupportedVersion { found: version });
        }
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        match usize::try_from(len) {
            Ok(len) if len <= MAX_FRAME_LEN => Ok(len),
            _ => Err(WireError::TooLarge { len: len.into() }),
        }
    }

    /// Decodes a frame body: exactly one CBOR value of type `T`, nothing after it.
    ///
    /// # Errors
    ///
    /// [`WireError::Decode`] if the body is not a valid encoding of `T`,
    /// [`WireError::TrailingBytes`] if bytes follow the value.
    pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
        let mut deserializer = serde_cbor::Deserializer::from_slice(body);
        let value = T::deserialize(&mut deserializer).map_err(WireError::Decode)?;
        let used = deserializer.byte_offset();
        if used != body.len() {
            return Err(WireError::TrailingBytes {
                count: body.len().saturating_sub(used),
            });
        }
        Ok(value)
    }

    /// Writes `value` as one frame and flushes.
    ///
    /// # Errors
    ///
    /// The errors of [`encode_frame`], and [`WireError::Io`] if writing fails.
    pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
        writer: &mut W,
        value: &T,
    ) -> Result<(), WireError> {
        let frame = encode_frame(value)?;
        writer.write_all(&frame).await?;
        writer.flush().await?;
        Ok(())
    }

    /// Reads one frame and decodes its body; `None` on a clean end of stream before the first
    /// byte of a frame.
    ///
    /// # Errors
    ///
    /// [`WireError::BadMagic`], [`WireError::UnsupportedVersion`] and [`WireError::TooLarge`]
    /// (checked before the body is allocated) from the header; [`WireError::Truncated`] if
    /// the stream ends inside a frame; [`WireError::Decode`] and [`WireError::TrailingBytes`]
    /// from the body; [`WireError::Io`] if reading fails. After any of these the stream is
    /// no longer at a frame boundary, except after `Decode` and `TrailingBytes`.
    pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
        reader: &mut R,
    ) -> Result<Option<T>, WireError> {
        match read_frame_body(reader).await? {
            Some(body) => decode_body(&body).map(Some),
            None => Ok(None),
        }
    }

    /// Reads one frame and returns its body undecoded; `None` on a clean end of stream
    /// before the first byte of a frame. Lets a server tell a malformed body (the stream is
    /// still at a frame boundary, answer and go on) from a broken stream.
    ///
    /// # Errors
    ///
    /// The header, truncation and I/O errors of [`read_frame`].
    pub async fn read_frame_body<R: AsyncRead + Unpin>(
        reader: &mut R,
    ) -> Result<Option<Vec<u8>>, WireError> {
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let n = reader.read(&mut header[filled..]).await?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(WireError::Truncated {
                    needed: HEADER_LEN,
                    available: filled,
                });
            }
            filled += n;
        }
        let body_len = parse_header(&header)?;
        // `body_len <= MAX_FRAME_LEN` here, so this allocation is bounded.
        let mut body = vec![0u8; body_len];
        let mut filled = 0;
        while filled < body_len {
            let n = reader.read(&mut body[filled..]).await?;
            if n == 0 {
                return Err(WireError::Truncated {
                    needed: HEADER_LEN + body_len,
                    available: HEADER_LEN + filled,
                });
            }
            filled += n;
        }
        Ok(Some(body))
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;
        use serde_bytes::ByteBuf;

        fn aggregates() -> EnclaveMetrics {
            EnclaveMetrics {
                requests: vec![RequestCount {
                    operation: "Encrypt".to_owned(),
                    code: "NotFoundException".to_owned(),
                    count: 2,
                }],
                duration_bounds: vec![0.001, 0.01],
                durations: vec![DurationHistogram {
                    operation: "Encrypt".to_owned(),
                    buckets: vec![1, 1, 0],
                    sum_seconds: 0.006,
                }],
                ..EnclaveMetrics::default()
            }
        }

        #[test]
        fn metrics_round_trip_and_their_bounds_are_checked() {
            let metrics = aggregates();
            assert_eq!(metrics.check(), Ok(()));
            let frame = encode_frame(&Request::Metrics(metrics.clone())).unwrap();
            assert_eq!(
                decode_frame::<Request>(&frame).unwrap(),
                Request::Metrics(metrics)
            );

            let mut bad = aggregates();
            bad.requests[0].code = "a\"b".to_owned();
            assert_eq!(
                bad.check(),
                Err(MetricsError::BadLabel { what: "requests" })
            );
            let mut bad = aggregates();
            bad.requests[0].operation = "x".repeat(MAX_METRIC_LABEL_LEN + 1);
            assert!(bad.check().is_err());
            let mut bad = aggregates();
            bad.durations[0].buckets.pop();
            assert_eq!(bad.check(), Err(MetricsError::BadHistogram));
            let mut bad = aggregates();
            bad.duration_bounds = vec![0.01, 0.001];
            assert_eq!(bad.check(), Err(MetricsError::BadHistogram));
            let mut bad = aggregates();
            bad.keys = vec![
                KeyCount {
                    spec: "SYMMETRIC_DEFAULT".to_owned(),
                    state: "Enabled".to_owned(),
                    count: 1,
                };
                MAX_METRIC_SERIES + 1
            ];
            assert_eq!(
                bad.check(),
                Err(MetricsError::TooMany {
                    what: "keys",
                    count: MAX_METRIC_SERIES + 1
                })
            );
        }

        fn key(kind: u8, id: &[u8]) -> RecordKey {
            RecordKey {
                kind,
                id: id.to_vec(),
            }
        }

        fn requests() -> Vec<Request> {
            vec![
                Request::Commit {
                    seq: u64::MAX,
                    base: Some(u64::MAX - 1),
                    puts: vec![
                        Record {
                            key: key(1, b"key-1"),
                            sealed: vec![0, 1, 2, 255],
                        },
                        Record {
                            key: key(255, b""),
                            sealed: Vec::new(),
                        },
                    ],
                    deletes: vec![key(2, b"alias/x")],
                    audit: vec![ByteBuf::from(&b"{\"a\":1}"[..]), ByteBuf::new()],
                },
                Request::Commit {
                    seq: 0,
                    base: None,
                    puts: Vec::new(),
                    deletes: Vec::new(),
                    audit: Vec::new(),
                },
                Request::Load {
                    after: None,
                    limit: 0,
                },
                Request::Load {
                    after: Some(key(3, &[0xff; 40])),
                    limit: u32::MAX,
                },
                Request::Ping,
                Request::Hold { session: u64::MAX },
                Request::Head,
                Request::Fetch {
                    at: None,
                    keys: vec![key(1, b"root")],
                },
                Request::Fetch {
                    at: Some(u64::MAX),
                    keys: Vec::new(),
                },
            ]
        }

        fn responses() -> Vec<Response> {
            vec![
                Response::Committed { seq: 7 },
                Response::Records {
                    records: vec![Record {
                        key: key(1, b"k"),
                        sealed: vec![9; 1000],
                    }],
                    done: false,
                },
                Response::Records {
                    records: Vec::new(),
                    done: true,
                },
                Response::Pong,
                Response::Holding,
                Response::Head {
                    seq: Some(u64::MAX),
                },
                Response::Head { seq: None },
                Response::Fetched {
                    at: 42,
                    records: vec![Record {
                        key: key(2, &[0, 7]),
                        sealed: vec![1; 300],
                    }],
                    through: 3,
                },
                Response::Error {
                    message: "disk full \u{1f4be}".to_owned(),
                },
                Response::Unavailable {
                    message: "the audit disk is full".to_owned(),
                },
            ]
        }

        #[test]
        fn every_variant_round_trips() {
            for request in requests() {
                let frame = encode_frame(&request).unwrap();
                assert_eq!(&frame[..4], b"EKMS");
                assert_eq!(frame[4], 1);
                let len = u32::from_be_bytes(frame[5..9].try_into().unwrap()) as usize;
                assert_eq!(len, frame.len() - HEADER_LEN);
                assert_eq!(decode_frame::<Request>(&frame).unwrap(), request);
            }
            for response in responses() {
                let frame = encode_frame(&response).unwrap();
                assert_eq!(decode_frame::<Response>(&frame).unwrap(), response);
            }
        }

        /// Byte fields are CBOR byte strings (major type 2), not arrays of integers: four
        /// times smaller, and what the enclave side expects.
        #[test]
        fn byte_fields_are_cbor_byte_strings() {
            let frame = encode_frame(&Record {
                key: key(1, b"id"),
                sealed: vec![0xAB; 3],
            })
            .unwrap();
            let body = &frame[HEADER_LEN..];
            assert!(body.windows(4).any(|w| w == [0x43, 0xAB, 0xAB, 0xAB]));
            assert!(body.windows(3).any(|w| w == [0x42, b'i', b'd']));
        }

        #[tokio::test]
        async fn async_round_trip_and_clean_eof() {
            let (mut a, mut b) = tokio::io::duplex(64);
            let writer = tokio::spawn(async move {
                for request in requests() {
                    write_frame(&mut a, &request).await.unwrap();
                }
            });
            for request in requests() {
                let read: Option<Request> = read_frame(&mut b).await.unwrap();
                assert_eq!(read, Some(request));
            }
            writer.await.unwrap();
            assert_eq!(read_frame::<_, Request>(&mut b).await.unwrap(), None);
        }

        #[tokio::test]
        async fn oversize_length_is_refused_before_allocating() {
            // Announces 4 GiB - 1, sends nothing more: refusing must not wait for the body
            // nor try to allocate it.
            let mut frame = b"EKMS\x01".to_vec();
            frame.extend_from_slice(&u32::MAX.to_be_bytes());
            let mut reader = &frame[..];
            let err = read_frame::<_, Request>(&mut reader).await.unwrap_err();
            assert!(matches!(err, WireError::TooLarge { len } if len == u64::from(u32::MAX)));
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::TooLarge { .. })
            ));

            // One past the limit is refused, the limit itself is not (it is then truncated).
            let mut frame = b"EKMS\x01".to_vec();
            frame.extend_from_slice(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::TooLarge { .. })
            ));
            frame[5..9].copy_from_slice(&(MAX_FRAME_LEN as u32).to_be_bytes());
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::Truncated { .. })
            ));
        }

        #[test]
        fn encoding_refuses_an_oversize_body() {
            let record = Record {
                key: key(1, b"big"),
                sealed: vec![0; MAX_FRAME_LEN],
            };
            assert!(matches!(
                encode_frame(&record),
                Err(WireError::TooLarge { .. })
            ));
        }

        #[test]
        fn bad_magic_and_version_are_refused() {
            let good = encode_frame(&Request::Ping).unwrap();
            let mut bad = good.clone();
            bad[0] = b'X';
            assert!(matches!(
                decode_frame::<Request>(&bad),
                Err(WireError::BadMagic { found }) if &found == b"XKMS"
            ));
            for version in [0u8, 2, 255] {
                let mut bad = good.clone();
                bad[4] = version;
                assert!(matches!(
                    decode_frame::<Request>(&bad),
                    Err(WireError::UnsupportedVersion { found }) if found == version
                ));
            }
        }

        #[tokio::test]
        async fn trailing_bytes_are_refused() {
            // After the frame.
            let mut frame = encode_frame(&Request::Ping).unwrap();
            frame.push(0);
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::TrailingBytes { count: 1 })
            ));

            // Inside the body, after the CBOR value (length covers them).
            let mut frame = encode_frame(&Request::Ping).unwrap();
            frame.extend_from_slice(&[0xf6, 0xf6]); // two CBOR nulls
            let len = (frame.len() - HEADER_LEN) as u32;
            frame[5..9].copy_from_slice(&len.to_be_bytes());
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::TrailingBytes { count: 2 })
            ));
            let mut reader = &frame[..];
            assert!(matches!(
                read_frame::<_, Request>(&mut reader).await,
                Err(WireError::TrailingBytes { count: 2 })
            ));
        }

        #[tokio::test]
        async fn truncated_frames_are_errors_at_every_length() {
            for request in requests() {
                let frame = encode_frame(&request).unwrap();
                for cut in 0..frame.len() {
                    let short = &frame[..cut];
                    assert!(
                        matches!(
                            decode_frame::<Request>(short),
                            Err(WireError::Truncated { .. })
                        ),
                        "cut at {cut}"
                    );
                    let mut reader = short;
                    let read = read_frame::<_, Request>(&mut reader).await;
                    if cut == 0 {
                        assert!(matches!(read, Ok(None)));
                    } else {
                        assert!(matches!(read, Err(WireError::Truncated { .. })), "{cut}");
                    }
                }
            }
        }

        #[test]
        fn unknown_variant_is_a_decode_error() {
            #[derive(Serialize)]
            enum Future {
                Compact { level: u8 },
            }
            let frame = encode_frame(&Future::Compact { level: 3 }).unwrap();
            assert!(matches!(
                decode_frame::<Request>(&frame),
                Err(WireError::Decode(_))
            ));
        }

        /// xorshift64*: deterministic, so a failure reproduces from the printed seed.
        struct Rng(u64);

        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
            }

            fn below(&mut self, n: usize) -> usize {
                (self.next() % n as u64) as usize
            }
        }

        /// Random bodies behind a valid header, random whole inputs, and valid frames with
        /// random bytes flipped: decoding returns, never panics.
        #[test]
        fn random_input_never_panics() {
            let valid: Vec<Vec<u8>> = requests()
                .iter()
                .map(|r| encode_frame(r).unwrap())
                .chain(responses().iter().map(|r| encode_frame(r).unwrap()))
                .collect();
            for seed in 1..=3000u64 {
                let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let input = match seed % 3 {
                    0 => {
                        let len = rng.below(200);
                        (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
                    }
                    1 => {
                        let len = rng.below(200);
                        let mut frame = b"EKMS\x01".to_vec();
                        frame.extend_from_slice(&(len as u32).to_be_bytes());
                        frame.extend((0..len).map(|_| rng.next() as u8));
                        frame
                    }
                    _ => {
                        let mut frame = valid[rng.below(valid.len())].clone();
                        for _ in 0..=rng.below(4) {
                            let at = HEADER_LEN + rng.below(frame.len() - HEADER_LEN);
                            frame[at] = rng.next() as u8;
                        }
                        frame
                    }
                };
                let _ = decode_frame::<Request>(&input);
                let _ = decode_frame::<Response>(&input);
            }
        }
    }
}
