//! The etcd v3 API through etcd's JSON gateway (`POST /v3/kv/range`, `/v3/kv/txn`), over
//! HTTP/1.1 on the client URLs etcd already serves.
//!
//! The same requests as etcd's gRPC API, field for field (keys and values base64, 64-bit
//! integers as strings), so no protobuf compiler is needed to build the parent. Every call is
//! bounded by [`CALL_TIMEOUT`] and tries each endpoint in turn when one cannot be reached.

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// Longest one call (connect, request, answer) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read from etcd: a range page is asked for with a byte budget well below it.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Connections kept open for reuse.
const POOL: usize = 8;

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No endpoint could be reached, or the call timed out.
    #[error("cannot reach etcd at {endpoints}: {last}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// What the last attempt said.
        last: String,
    },
    /// etcd answered with an error.
    #[error("etcd refused {path}: {message}")]
    Refused {
        /// The API path.
        path: &'static str,
        /// etcd's message.
        message: String,
    },
    /// etcd's answer is not what its API defines.
    #[error("unexpected answer from etcd to {path}: {why}")]
    Malformed {
        /// The API path.
        path: &'static str,
        /// What was wrong.
        why: String,
    },
}

/// One key and its value, as a range returns them.
#[derive(Debug, Clone)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// A page of a range.
#[derive(Debug)]
pub struct Range {
    /// In key order.
    pub kvs: Vec<KeyValue>,
    /// More keys follow in the range.
    pub more: bool,
    /// The store revision the page was read at.
    pub revision: i64,
}

/// One comparison of a transaction.
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key holds exactly this value.
    Value(Vec<u8>, Vec<u8>),
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Sets the key.
    Put(Vec<u8>, Vec<u8>),
    /// Removes the key.
    Delete(Vec<u8>),
    /// Removes every key in `[from, to)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// A client of one etcd cluster.
pub struct Gateway {
    endpoints: Vec<String>,
    pool: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn i64_string<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        N(i64),
    }
    match N::deserialize(d)? {
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::N(n) => Ok(n),
    }
}

#[derive(Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "i64_string")]
    revision: i64,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RangeAnswer {
    header: Header,
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct CountAnswer {
    #[serde(default, deserialize_with = "i64_string")]
    count: i64,
}

#[derive(Deserialize)]
struct TxnAnswer {
    header: Header,
    #[serde(default)]
    succeeded: bool,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

impl Gateway {
    /// A client of the cluster whose client URLs are `endpoints` (`HOST:PORT`).
    pub fn new(endpoints: Vec<String>) -> Self {
        Gateway {
            endpoints,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Reads up to `limit` keys in `[key, end)` (0: no limit), at `revision` (0: the latest).
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn range(
        &self,
        key: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Range, GatewayError> {
        const PATH: &str = "/v3/kv/range";
        let body = json!({
            "key": b64(key),
            "range_end": b64(end),
            "limit": limit.to_string(),
            "revision": revision.to_string(),
        });
        let answer: RangeAnswer = self.call(PATH, &body).await?;
        let mut kvs = Vec::with_capacity(answer.kvs.len());
        for kv in answer.kvs {
            let decode = |s: &str| {
                B64.decode(s).map_err(|e| GatewayError::Malformed {
                    path: PATH,
                    why: format!("base64: {e}"),
                })
            };
            kvs.push(KeyValue {
                key: decode(&kv.key)?,
                value: decode(&kv.value)?,
            });
        }
        Ok(Range {
            kvs,
            more: answer.more,
            revision: answer.header.revision,
        })
    }

    /// The first key in `[key, end)` at `revision` (0: the latest), without its value.
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn first_key(
        &self,
        key: &[u8],
        end: &[u8],
        revision: i64,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        const PATH: &str = "/v3/kv/range";
        let body = json!({
            "key": b64(key),
            "range_end": b64(end),
            "limit": "1",
            "revision": revision.to_string(),
            "keys_only": true,
        });
        let answer: RangeAnswer = self.call(PATH, &body).await?;
        answer
            .kvs
            .into_iter()
            .next()
            .map(|kv| {
                B64.decode(&kv.key).map_err(|e| GatewayError::Malformed {
                    path: PATH,
                    why: format!("base64: {e}"),
                })
            })
            .transpose()
    }

    /// How many keys `[key, end)` holds at `revision` (0: the latest).
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn count(&self, key: &[u8], end: &[u8], revision: i64) -> Result<i64, GatewayError> {
        let body = json!({
            "key": b64(key),
            "range_end": b64(end),
            "revision": revision.to_string(),
            "count_only": true,
        });
        let answer: CountAnswer = self.call("/v3/kv/range", &body).await?;
        Ok(answer.count)
    }

    /// Reads one key at the latest revision.
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
        let mut end = key.to_vec();
        end.push(0);
        let range = self.range(key, &end, 1, 0).await?;
        Ok(range.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Applies `ops` atomically if every comparison holds; returns whether they did, and the
    /// revision after.
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses (for example a request larger
    /// than its `--max-request-bytes` or with more than `--max-txn-ops` operations).
    pub async fn txn(&self, compares: &[Compare], ops: &[Op]) -> Result<(bool, i64), GatewayError> {
        const PATH: &str = "/v3/kv/txn";
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(key) => json!({
                    "key": b64(key), "target": "VERSION", "result": "EQUAL", "version": "0",
                }),
                Compare::Value(key, value) => json!({
                    "key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value),
                }),
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put(key, value) => {
                    json!({"request_put": {"key": b64(key), "value": b64(value)}})
                }
                Op::Delete(key) => json!({"request_delete_range": {"key": b64(key)}}),
                Op::DeleteRange(from, to) => {
                    json!({"request_delete_range": {"key": b64(from), "range_end": b64(to)}})
                }
            })
            .collect();
        let body = json!({"compare": compare, "success": success});
        let answer: TxnAnswer = self.call(PATH, &body).await?;
        Ok((answer.succeeded, answer.header.revision))
    }

    /// The values of `keys` at `revision`, in the order asked (`None` for a key absent there):
    /// one read-only transaction of one range per key, so at most 128 keys (etcd's default
    /// `--max-txn-ops`).
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses (a compacted revision, say).
    pub async fn values_at(
        &self,
        keys: &[Vec<u8>],
        revision: i64,
    ) -> Result<Vec<Option<Vec<u8>>>, GatewayError> {
        const PATH: &str = "/v3/kv/txn";
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            responses: Vec<Response>,
        }
        #[derive(Deserialize)]
        struct Response {
            response_range: Option<RangeKvs>,
        }
        #[derive(Deserialize)]
        struct RangeKvs {
            #[serde(default)]
            kvs: Vec<RawKv>,
        }
        let success: Vec<Value> = keys
            .iter()
            .map(|key| {
                json!({"request_range": {
                    "key": b64(key),
                    "limit": "1",
                    "revision": revision.to_string(),
                }})
            })
            .collect();
        let answer: Answer = self.call(PATH, &json!({ "success": success })).await?;
        if answer.responses.len() != keys.len() {
            return Err(GatewayError::Malformed {
                path: PATH,
                why: format!(
                    "{} answers to {} ranges",
                    answer.responses.len(),
                    keys.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(keys.len());
        for (key, response) in keys.iter().zip(answer.responses) {
            let Some(range) = response.response_range else {
                return Err(GatewayError::Malformed {
                    path: PATH,
                    why: "an answer that is not a range's".to_owned(),
                });
            };
            let value = match range.kvs.into_iter().next() {
                None => None,
                Some(kv) => {
                    let decode = |s: &str| {
                        B64.decode(s).map_err(|e| GatewayError::Malformed {
                            path: PATH,
                            why: format!("base64: {e}"),
                        })
                    };
                    if &decode(&kv.key)? != key {
                        return Err(GatewayError::Malformed {
                            path: PATH,
                            why: "a range answered with another key".to_owned(),
                        });
                    }
                    Some(decode(&kv.value)?)
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    /// A lease of `ttl` seconds; its id.
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, GatewayError> {
        #[derive(serde::Deserialize)]
        struct Granted {
            #[serde(rename = "ID", deserialize_with = "i64_string")]
            id: i64,
        }
        let answer: Granted = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        Ok(answer.id)
    }

    /// Sets `key` to `value` under `lease`: the key goes when the lease expires.
    ///
    /// # Errors
    /// [`GatewayError`] if etcd cannot be reached or refuses.
    pub async fn put_leased(
        &self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<(), GatewayError> {
        let body = json!({ "key": b64(key), "value": b64(value), "lease": lease.to_string() });
        let _: Value = self.call("/v3/kv/put", &body).await?;
        Ok(())
    }

    /// Posts `body` to `path` on the first endpoint that answers.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Value,
    ) -> Result<T, GatewayError> {
        let body = Bytes::from(body.to_string());
        let mut last = String::from("no endpoint");
        // The first endpoint twice: on a pooled connection (which the server may have closed
        // since), then on a fresh one; then each other endpoint on a fresh one.
        let tries = std::iter::once((0, true))
            .chain((0..self.endpoints.len()).map(|endpoint| (endpoint, false)));
        for (attempt, pooled) in tries {
            match tokio::time::timeout(
                CALL_TIMEOUT,
                self.attempt(attempt, pooled, path, body.clone()),
            )
            .await
            {
                Ok(Ok((status, answer))) if status.is_success() => {
                    return serde_json::from_slice(&answer).map_err(|e| GatewayError::Malformed {
                        path,
                        why: e.to_string(),
                    });
                }
                Ok(Ok((status, answer))) => {
                    #[derive(Deserialize)]
                    struct Failure {
                        #[serde(default)]
                        message: String,
                        #[serde(default)]
                        error: String,
                    }
                    let message = match serde_json::from_slice::<Failure>(&answer) {
                        Ok(f) if !f.message.is_empty() => f.message,
                        Ok(f) if !f.error.is_empty() => f.error,
                        _ => format!("HTTP {status}"),
                    };
                    return Err(GatewayError::Refused { path, message });
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer in {CALL_TIMEOUT:?}"),
            }
        }
        Err(GatewayError::Unreachable {
            endpoints: self.endpoints.join(","),
            last,
        })
    }

    /// One try on endpoint number `attempt`, on a pooled connection if `pooled` and one is
    /// there, else on a new one.
    async fn attempt(
        &self,
        attempt: usize,
        pooled: bool,
        path: &'static str,
        body: Bytes,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let endpoint = self
            .endpoints
            .get(attempt)
            .ok_or_else(|| "no endpoint".to_owned())?;
        let pooled = if pooled {
            self.pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
        } else {
            None
        };
        let mut sender = match pooled {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let stream = tokio::net::TcpStream::connect(endpoint.as_str())
                    .await
                    .map_err(|e| format!("{endpoint}: {e}"))?;
                let _ = stream.set_nodelay(true);
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("{endpoint}: {e}"))?;
                // The connection's driver ends with the connection.
                tokio::spawn(connection);
                sender
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, endpoint.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("{endpoint}: reading the answer: {e}"))?
            .to_bytes();
        if attempt == 0 {
            let mut pool = self
                .pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if pool.len() < POOL {
                pool.push(sender);
            }
        }
        Ok((status, answer))
    }
}
