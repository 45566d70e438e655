//! The API server shell: TLS, HTTP/1.1, SigV4, then the KMS core. All I/O of the enclave's
//! request path lives here; the core ([`crate::kms::dispatch`]) does none.

use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::BufReader;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use ekms_shared::release::{Hold, HoldCell, HoldWriter};
use ekms_shared::transport::{Listener, Stream, LINGER, LINGER_BYTES};

use super::sts;
use super::audit::{
    self, claimed_access_key, request_ids, Assembled, AuditAnswer, Pending, QueueChanges,
};
use crate::custody::admin::{Custody, Phase};
use crate::durability::audit::{AuditChain, Head, Identity};
use crate::config::Config;
use crate::kms::dispatch;
use crate::env::Env;
use crate::error::KmsError;
use crate::kms::ops::{Caller, Ctx, State};
use crate::durability::persist::{self, Persister, Touched};
use crate::durability::seal::manifest::Manifest;
use crate::durability::seal::DomainKey;
use crate::access::sigv4::{self, Scope, SignedRequest};

/// Largest request body accepted (the largest KMS request, a 32 KiB key policy, fits).
pub const MAX_BODY: usize = 64 * 1024;
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// SigV4's allowed clock skew.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Bytes read at once from a TLS connection, below TLS (so ciphertext only): a 4 KiB request
/// and its headers in one read.
const TLS_READ_BUFFER: usize = 8 * 1024;
/// Time allowed for a TLS handshake, for request headers, and for a request body.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The enclave's service: state plus what it needs to answer requests.
pub struct Service {
    /// Keys, aliases, principals.
    pub state: Arc<State>,
    /// Region, account, bounds.
    pub config: Config,
    /// Clock and randomness.
    pub env: Env,
    pub(super) phase: AtomicU8,
    pub(super) custody: tokio::sync::Mutex<Custody>,
    /// The store channel until unseal hands it to the persister.
    pub(super) store: tokio::sync::Mutex<Option<Stream>>,
    /// A member's second store channel, on which it follows the store once unsealed.
    pub(super) follow_channel: tokio::sync::Mutex<Option<Stream>>,
    /// When a member last knew its state to be the store's (unused by a lone enclave).
    pub(super) freshness: Arc<persist::Freshness>,
    /// The committer of the current store session; a member that recovers replaces it.
    pub(super) persister: std::sync::RwLock<Option<Persister>>,
    /// Where the store channel is, to open new ones (recovering).
    pub(super) store_address: Option<ekms_shared::transport::Address>,
    /// The domain key, kept to reload the store when the service recovers.
    pub(super) domain: std::sync::Mutex<Option<Arc<crate::durability::seal::DomainKey>>>,
    /// Set while the service takes the store's state again ([`Service::recover`]): requests
    /// are refused meanwhile.
    pub(super) recovering: std::sync::atomic::AtomicBool,
    /// Where the state loaded into the current session stood: the store's commit and audit
    /// head, a floor no recovery may go below.
    pub(super) floor: std::sync::Mutex<Option<(u64, crate::durability::audit::Head)>>,
    /// Fires when the store session failed and the service may recover in place (a member,
    /// or a store that refused a commit for now): its supervisor recovers it.
    pub lost: Arc<Notify>,
    /// Fires when the service must stop (the durable store failed).
    pub fatal: Arc<Notify>,
    /// The TLS identity served (none for plain HTTP).
    pub(super) tls: Option<Arc<crate::keys::tls::TlsIdentity>>,
    /// Where the CA certificate is written for clients (mock mode).
    pub(super) tls_ca_out: Option<std::path::PathBuf>,
    /// Request counts and durations for the parent's metrics (`api::metrics`).
    pub request_metrics: super::request_counts::RequestMetrics,
    /// The unseal's or join's load in progress, for `Ekms.Status` meanwhile.
    pub(super) loading: super::loading::LoadWatch,
}

pub(super) fn phase_code(phase: Phase) -> u8 {
    match phase {
        Phase::MemoryOnly => 0,
        Phase::Uninitialized => 1,
        Phase::Sealed => 2,
        Phase::Unsealed => 3,
    }
}

fn phase_of(code: u8) -> Phase {
    match code {
        0 => Phase::MemoryOnly,
        1 => Phase::Uninitialized,
        2 => Phase::Sealed,
        _ => Phase::Unsealed,
    }
}

const JSON: HeaderValue = HeaderValue::from_static("application/x-amz-json-1.1");
const XML: HeaderValue = HeaderValue::from_static("text/xml");

/// An STS (query protocol) answer: XML, errors in STS's `ErrorResponse` shape.
fn respond_query(request_id: &str, result: Result<Vec<u8>, KmsError>) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => {
            if let KmsError::Internal(why) = &e {
                tracing::warn!(request_id, why, "internal error");
            }
            (
                StatusCode::from_u16(e.sts_http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                sts::error_response(&e, request_id),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, XML);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn respond(request_id: &str, result: Result<Vec<u8>, KmsError>) -> Response<Full<Bytes>> {
    let (status, body, error_type) = match result {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => {
            if let KmsError::Internal(why) = &e {
                tracing::warn!(request_id, why, "internal error");
            }
            let body = match e.client_message() {
                Some(message) => serde_json::json!({ "__type": e.aws_code(), "message": message }),
                None => serde_json::json!({ "__type": e.aws_code() }),
            };
            (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                serde_json::to_vec(&body).unwrap_or_default(),
                Some(e.aws_code()),
            )
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, JSON);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(code) = error_type {
        headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
    }
    response
}

impl Service {
    /// A service in `phase`; `store` is the open store channel (none in memory-only mode).
    pub fn new(
        state: Arc<State>,
        config: Config,
        env: Env,
        phase: Phase,
        deployment: Option<persist::Deployment>,
        store: Option<Stream>,
    ) -> crate::error::KmsResult<Self> {
        let custody = Custody::new(phase, deployment, env.entropy.as_ref())?;
        Ok(Service {
            state,
            config,
            env,
            phase: AtomicU8::new(phase_code(phase)),
            custody: tokio::sync::Mutex::new(custody),
            store: tokio::sync::Mutex::new(store),
            follow_channel: tokio::sync::Mutex::new(None),
            freshness: Arc::default(),
            persister: std::sync::RwLock::new(None),
            store_address: None,
            domain: std::sync::Mutex::new(None),
            recovering: std::sync::atomic::AtomicBool::new(false),
            floor: std::sync::Mutex::new(None),
            lost: Arc::new(Notify::new()),
            fatal: Arc::new(Notify::new()),
            tls: None,
            tls_ca_out: None,
            request_metrics: super::request_counts::RequestMetrics::default(),
            loading: super::loading::LoadWatch::default(),
        })
    }

    /// This service, opening new store channels at `address` when it recovers.
    #[must_use]
    pub fn with_store_address(mut self, address: ekms_shared::transport::Address) -> Self {
        self.store_address = Some(address);
        self
    }

    /// This service, a member of several sharing the store, following it on `channel` (a
    /// second store channel) once unsealed.
    #[must_use]
    pub fn with_follow_channel(
        mut self,
        channel: Stream,
        address: ekms_shared::transport::Address,
    ) -> Self {
        self.follow_channel = tokio::sync::Mutex::new(Some(channel));
        self.store_address = Some(address);
        self
    }

    /// The committer of the current store session, if any.
    pub(super) fn persister(&self) -> Option<Persister> {
        self.persister
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the service is taking the store's state again ([`Service::recover`]).
    pub fn recovering(&self) -> bool {
        self.recovering.load(Ordering::SeqCst)
    }

    /// Whether the current store session failed (a member then recovers).
    pub fn store_failed(&self) -> bool {
        self.persister().is_some_and(|p| p.failed())
    }

    /// This service serving `identity` (and writing its CA to `ca_out`, mock mode).
    #[must_use]
    pub fn with_tls(
        mut self,
        identity: Option<Arc<crate::keys::tls::TlsIdentity>>,
        ca_out: Option<std::path::PathBuf>,
    ) -> Self {
        self.tls = identity;
        self.tls_ca_out = ca_out;
        self
    }

    /// Serves a fresh leaf under the deployment's CA (making and sealing the CA for a store
    /// that has none yet): the one identity clients pin across restarts.
    pub(super) async fn serve_deployment_tls(
        &self,
        loaded: Option<crate::keys::tls::DeploymentCa>,
    ) -> Result<(), KmsError> {
        let ca = match loaded {
            Some(ca) => ca,
            None => {
                let ca =
                    crate::keys::tls::DeploymentCa::generate("ekms deployment CA", 20).map_err(|e| {
                        tracing::error!(error = %e, "making the deployment's TLS CA failed");
                        KmsError::Internal("making the deployment's TLS CA failed")
                    })?;
                self.state.set_tls_ca(ca);
                self.persist(vec![Touched::TlsCa], None).await?;
                tracing::info!("made and sealed the deployment's TLS CA");
                return self.serve_loaded_tls();
            }
        };
        self.state.set_tls_ca(ca);
        self.serve_loaded_tls()
    }

    /// Issues the leaf again once what it presents is stale (a rotation's overlap ended).
    pub fn refresh_tls(&self) {
        if self.state.tls_operator().is_some_and(|o| o.is_installed()) {
            return;
        }
        let (Some(identity), Some(ca)) = (&self.tls, self.state.tls_ca()) else {
            return;
        };
        if identity.stale_under(&ca) {
            if let Err(e) = self.serve_loaded_tls() {
                tracing::error!(error = %e, "refreshing the TLS leaf failed");
            }
        }
    }

    fn serve_loaded_tls(&self) -> Result<(), KmsError> {
        if let (Some(identity), Some(operator)) = (&self.tls, self.state.tls_operator()) {
            if operator.is_installed() {
                identity.serve_operator(&operator).map_err(|e| {
                    tracing::error!(error = %e, "serving the operator-issued certificate failed");
                    KmsError::Internal("serving the operator-issued certificate failed")
                })?;
                tracing::info!("serving TLS under the operator-issued certificate");
                return Ok(());
            }
        }
        let (Some(identity), Some(ca)) = (&self.tls, self.state.tls_ca()) else {
            return Ok(());
        };
        identity
            .serve_under(&ca, self.env.attester.as_ref())
            .map_err(|e| {
                tracing::error!(error = %e, "issuing the TLS leaf under the deployment CA failed");
                KmsError::Internal("issuing the TLS certificate failed")
            })?;
        if let Some(path) = &self.tls_ca_out {
            if let Err(e) = std::fs::write(path, ca.cert_pem()) {
                tracing::warn!(error = %e, path = %path.display(), "writing the CA certificate failed");
            }
        }
        tracing::info!("serving TLS under the deployment's CA");
        Ok(())
    }

    /// Where the service is in its lifecycle.
    pub fn phase(&self) -> Phase {
        phase_of(self.phase.load(Ordering::SeqCst))
    }

    /// Makes `touched` durable (nothing to do in memory-only mode).
    ///
    /// # Errors
    /// `KMSInternalException` if the store cannot; the service is then stopping.
    pub async fn persist(
        &self,
        touched: Vec<Touched>,
        audit: Option<crate::durability::audit::Record>,
    ) -> Result<(), KmsError> {
        match self.persister() {
            Some(p) => Ok(p.persist(touched, audit).await?),
            None => Ok(()),
        }
    }

    /// Queues `touched` and `audit` for the store without waiting (nothing to do in
    /// memory-only mode). Answers given from now on are held until they are durable (see
    /// [`Service::release_point`]).
    ///
    /// # Errors
    /// `KMSInternalException` if the store failed; the service is then stopping.
    pub async fn submit(
        &self,
        touched: Vec<Touched>,
        audit: Option<crate::durability::audit::Record>,
    ) -> Result<(), KmsError> {
        match self.persister() {
            Some(p) => Ok(p.submit(touched, audit).await.map(drop)?),
            None => Ok(()),
        }
    }

    /// Queues a refused request's audit record to ride with the next commit (nothing to do in
    /// memory-only mode).
    ///
    /// # Errors
    /// `KMSInternalException` if the store failed; the service is then stopping.
    pub fn note_refused(&self, audit: crate::durability::audit::Record) -> Result<(), KmsError> {
        match self.persister() {
            Some(p) => Ok(p.note_refused(audit)?),
            None => Ok(()),
        }
    }

    /// What an answer given now must be held for: the commit of the last change queued.
    /// Nothing while sealed, before init, or in memory-only mode (no change is queued then:
    /// init and unseal wait for their own writes).
    pub fn release_point(&self) -> Hold {
        self.persister()
            .map_or(Hold::NONE, |p| p.release_point())
    }

    /// Queues `touched`, changed under a write lock the caller still holds (so no answer that
    /// saw the change outruns it); what to wait for. `None` in memory-only mode.
    ///
    /// # Errors
    /// `KMSInternalException` if the store failed; the service is then stopping.
    pub(super) fn enqueue_locked(&self, touched: Vec<Touched>) -> Result<Option<Hold>, KmsError> {
        if touched.is_empty() {
            return Ok(None);
        }
        match self.persister() {
            Some(p) => Ok(Some(p.enqueue_change(touched, None)?.0)),
            None => Ok(None),
        }
    }

    /// Waits until `hold` is durable.
    pub(super) async fn wait_durable(&self, hold: Option<Hold>) -> Result<(), KmsError> {
        self.durable(hold).await
    }

    /// Waits until `hold` is durable.
    async fn durable(&self, hold: Option<Hold>) -> Result<(), KmsError> {
        match (hold, self.persister()) {
            (Some(hold), Some(p)) => Ok(p.durable_through(hold.seq).await?),
            _ => Ok(()),
        }
    }

    /// Destroys keys whose deletion date passed, durably.
    pub async fn sweep(&self) {
        let now = self.env.now();
        let queued = {
            let mut store = self.state.write();
            let (keys, aliases, grants) = store.sweep(now);
            // Imported material past its ValidTo: deleted, the key back to PendingImport.
            let expired = store.expire_material(now);
            if keys.is_empty() && expired.is_empty() {
                return;
            }
            tracing::info!(
                destroyed = keys.len(),
                expired = expired.len(),
                "destroyed keys whose deletion date passed, deleted expired imported material"
            );
            let touched = keys
                .into_iter()
                .chain(expired)
                .map(Touched::Key)
                .chain(aliases.into_iter().map(Touched::Alias))
                .chain(grants.into_iter().map(|(k, g)| Touched::Grant(k, g)))
                .collect();
            self.enqueue_locked(touched)
        };
        if let Err(e) = async { self.durable(queued?).await }.await {
            tracing::error!(error = %e, "could not make key destruction durable");
        }
    }

    /// Rotates keys whose automatic rotation date passed on the enclave clock, durably
    /// (see [`crate::keys::rotation::rotate_due`]).
    pub async fn rotate_due(&self) {
        let queued = {
            let mut store = self.state.write();
            let rotated =
                crate::keys::rotation::rotate_due(&mut store, self.env.now(), self.env.entropy.as_ref());
            if rotated.is_empty() {
                return;
            }
            tracing::info!(
                rotated = rotated.len(),
                "rotated keys whose rotation date passed"
            );
            // Queued before the lock is released: an Encrypt under the new version is answered
            // only once the version is durable.
            self.enqueue_locked(rotated.into_iter().map(Touched::Key).collect())
        };
        if let Err(e) = async { self.durable(queued?).await }.await {
            tracing::error!(error = %e, "could not make automatic rotation durable");
        }
    }

    pub(super) async fn start_persister(
        &self,
        stream: Stream,
        domain: Arc<DomainKey>,
        manifest: Manifest,
        audit_head: Head,
    ) -> Result<(), KmsError> {
        let persister = self
            .open_session(stream, domain.clone(), manifest, audit_head)
            .await?;
        *self
            .persister
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(persister.clone());
        self.watch_session(persister, domain).await;
        Ok(())
    }

    /// A new store session on `stream`: announced, its audit chain started, its commits
    /// numbered from a random distance past `manifest`'s last one; committing, not yet the
    /// service's.
    pub(super) async fn open_session(
        &self,
        mut stream: Stream,
        domain: Arc<DomainKey>,
        manifest: Manifest,
        audit_head: Head,
    ) -> Result<Persister, KmsError> {
        let chain = if self.config.member {
            // A member's chain is its own and starts afresh with each session, under a member
            // id made now: the store's root is shared, so no member's head is sealed there.
            let mut id = [0u8; 8];
            self.env.entropy.fill(&mut id)?;
            let member = hex::encode(id);
            tracing::info!(member = %member, "serving as one member of a shared store");
            AuditChain::start(Head::GENESIS, self.env.attester.as_ref())?.for_member(member)
        } else {
            AuditChain::start(audit_head, self.env.attester.as_ref())?
        };
        // A new session per store channel: answers held for an earlier one (of a process that
        // stopped, or of a member's session that failed) can never be released by this one's
        // commits.
        let mut session = [0u8; 8];
        self.env.entropy.fill(&mut session)?;
        let session = u64::from_be_bytes(session);
        persist::announce(&mut stream, session).await?;
        *self
            .floor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((manifest.seq(), audit_head));
        // Commits start at a random distance past the root loaded, so that no refused commit
        // of an earlier session (kept by the parent) shares their numbers.
        let mut manifest = manifest;
        let mut gap = [0u8; 8];
        self.env.entropy.fill(&mut gap)?;
        let mask = (1u64 << crate::durability::seal::manifest::BOOT_GAP_BITS) - 1;
        manifest.skip(1 + (u64::from_be_bytes(gap) & mask));
        Ok(Persister::start(
            stream,
            self.state.clone(),
            domain,
            manifest,
            self.env.entropy.clone(),
            chain,
            session,
        ))
    }

    /// Watches the service's new session: when it fails, the supervisor recovers a member, or
    /// a lone enclave whose store refused a commit for now ([`Persister::failed_for_now`]: its
    /// audit disk is full), in place ([`Service::recover`]); a lone enclave stops on any other
    /// failure (fail-stop). A member also follows the store on its second channel.
    pub(super) async fn watch_session(&self, persister: Persister, domain: Arc<DomainKey>) {
        *self
            .domain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(domain.clone());
        if self.config.member {
            // Just loaded: the state is the store's as of now.
            #[allow(clippy::disallowed_methods)] // the server is the shell
            self.freshness.confirm(std::time::Instant::now());
            match self.follow_channel.lock().await.take() {
                Some(channel) => {
                    let follower = persister.clone();
                    let freshness = self.freshness.clone();
                    let config = Arc::new(self.config.clone());
                    let stop = self.lost.clone();
                    #[allow(clippy::disallowed_methods)] // the server is the shell
                    tokio::spawn(async move {
                        if let Err(e) =
                            persist::follow(channel, follower, domain, config, freshness).await
                        {
                            tracing::warn!(error = %e, "following the shared store stopped");
                            stop.notify_one();
                        }
                    });
                }
                None => tracing::error!(
                    "a member without a second store channel cannot follow the store: refusing requests"
                ),
            }
        }
        let (lost, fatal, member) = (self.lost.clone(), self.fatal.clone(), self.config.member);
        #[allow(clippy::disallowed_methods)] // the server is the shell
        tokio::spawn(async move {
            persister.fatal().await;
            if member || persister.failed_for_now() {
                lost.notify_one();
            } else {
                fatal.notify_one();
            }
        });
    }

    /// Serves one HTTP request.
    pub async fn serve_request(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        #[allow(clippy::disallowed_methods)] // the server is the shell: it times each request
        let started = std::time::Instant::now();
        let (request_id, event_id) = request_ids(self.env.entropy.as_ref());
        let request_id = request_id.to_string();
        let mut pending = Pending {
            request_id: request_id.clone(),
            event_id,
            ..Pending::default()
        };
        let query = sts::is_query_request(request.method(), request.uri(), request.headers());
        let mut result = self.answer(request, query, &mut pending).await;
        let unserved = pending.unserved;
        // Noted before the audit record takes it (mock mode only: see `log_request`).
        let answer_key = if self.env.attester.is_secure() {
            None
        } else {
            pending.answer_key.clone()
        };
        // Every authenticated (or refused) KMS request is recorded, durably, before the answer;
        // if the record cannot be written the request fails (fail closed).
        if let Some(Assembled { record, refused }) =
            audit::assemble(&mut pending, &result, self.env.now(), &self.config)
        {
            let touched = std::mem::take(&mut pending.touched);
            // The record goes to the session its change was queued in.
            let recorded = match (pending.ticket, pending.issuer.take()) {
                // Its changes were queued under their locks with a placeholder record: this
                // one takes its place, in the same commit.
                (Some(ticket), Some(persister)) if touched.is_empty() => {
                    persister.attach(ticket, record);
                    Ok(())
                }
                _ if refused && touched.is_empty() => self.note_refused(record),
                _ => self.submit(touched, Some(record)).await,
            };
            if let Err(e) = recorded {
                result = Err(e);
            }
        }
        self.log_request(
            &pending,
            answer_key.as_deref(),
            &result,
            query,
            started.elapsed(),
        );
        // An oversized body was not read: the connection cannot carry another request.
        let close = matches!(result, Err(KmsError::RequestTooLarge(..)));
        let mut response = if query {
            respond_query(&request_id, result)
        } else {
            respond(&request_id, result)
        };
        if close {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if unserved {
            response.extensions_mut().insert(Unheld);
        }
        response
    }

    /// The request's log line (`info`, target `ekms::request`): its id (the `x-amzn-RequestId`
    /// the client received, the `requestID` of its audit record), operation, HTTP status, AWS
    /// error code, and the time the enclave took (the parent then holds the answer until its
    /// commit is durable). Never a request's body or answer.
    ///
    /// Who asked and which key the answer named are logged in mock mode only: a real enclave's
    /// log leaves it only through its console, which the parent reads (a debug-mode enclave),
    /// so it keeps to ids, codes and times; the audit record, found by the request id, says
    /// who and what.
    fn log_request(
        &self,
        pending: &Pending,
        answer_key: Option<&str>,
        result: &Result<Vec<u8>, KmsError>,
        query: bool,
        elapsed: Duration,
    ) {
        let operation = pending.op.or(pending.custody_op).unwrap_or("-");
        let (status, error_code) = match result {
            Ok(_) => (200, None),
            Err(e) if query => (e.sts_http_status(), Some(e.sts_code())),
            Err(e) => (e.http_status(), Some(e.aws_code())),
        };
        let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.request_metrics
            .record(operation, error_code.unwrap_or("200"), elapsed);
        if self.env.attester.is_secure() {
            tracing::info!(
                target: "ekms::request",
                request_id = %pending.request_id,
                operation,
                status,
                error_code,
                duration_us,
                "request"
            );
        } else {
            let principal = match &pending.identity {
                Some(Identity::User { arn, .. }) => Some(arn.as_str()),
                Some(Identity::Unknown { .. }) | None => None,
            };
            tracing::info!(
                target: "ekms::request",
                request_id = %pending.request_id,
                operation,
                status,
                error_code,
                duration_us,
                principal,
                key = answer_key,
                "request"
            );
        }
    }

    /// Refuses requests until the domain key is there.
    ///
    /// # Errors
    /// `KMSInvalidStateException` while uninitialized or sealed.
    /// [`Service::check_unsealed`] for a request: one it refuses is marked as reading no
    /// state ([`Pending::unserved`]), so its answer is not held (a recovering service's last
    /// change may never become durable).
    fn check_answering(&self, pending: &mut Pending) -> Result<(), KmsError> {
        self.check_unsealed().inspect_err(|_| pending.unserved = true)
    }

    fn check_unsealed(&self) -> Result<(), KmsError> {
        match self.phase() {
            Phase::Unsealed if self.recovering.load(Ordering::SeqCst) => {
                Err(KmsError::DependencyTimeout(
                    "ekms cannot make requests durable now: its store refused a commit (for \
                     example, its audit log's disk is full) and it is taking the store's state \
                     again; it resumes by itself once the store takes commits. Retry the request."
                        .to_owned(),
                ))
            }
            // A member answers only while its state is known to be the store's.
            #[allow(clippy::disallowed_methods)] // the server is the shell
            Phase::Unsealed if self.config.member => {
                self.freshness.check(std::time::Instant::now())
            }
            Phase::Unsealed | Phase::MemoryOnly => Ok(()),
            Phase::Uninitialized => Err(KmsError::InvalidState(
                "ekms is not initialized: run `ekms init`.".to_owned(),
            )),
            Phase::Sealed => Err(KmsError::InvalidState(
                "ekms is sealed: custodians must run `ekms unseal` until the threshold of shares is reached.".to_owned(),
            )),
        }
    }

    /// Verifies the request's SigV4 signature for `service` against the principals, and notes
    /// who made it (or, refused, the access key it claimed) for the audit record. Returns the
    /// caller and its principal's unique id.
    ///
    /// # Errors
    /// The SigV4 failures ([`KmsError::Auth`]).
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
        pending: &mut Pending,
    ) -> Result<(Caller, String), KmsError> {
        pending.user_agent = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let digest = ring::digest::digest(&ring::digest::SHA256, body);
        let mut body_sha256 = [0u8; 32];
        body_sha256.copy_from_slice(digest.as_ref());
        let signed = SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body_sha256,
        };
        let scope = Scope {
            region: &self.config.region,
            service,
        };
        let now_secs = self.env.now().div_euclid(1000);
        let caller = {
            let principals = self.state.principals();
            sigv4::verify(&signed, &scope, now_secs, MAX_SKEW_SECS, &*principals)
                .map_err(KmsError::Auth)
                .and_then(|verified| {
                    let principal = principals
                        .by_access_key(&verified.access_key_id)
                        .ok_or(KmsError::Auth(sigv4::SigV4Error::UnrecognizedClient))?;
                    Ok((
                        Caller {
                            arn: principal.arn.clone(),
                            access_key_id: verified.access_key_id,
                            identity_policy: principal.identity_policy(),
                        },
                        principal.id.clone(),
                    ))
                })
        };
        match caller {
            Ok((caller, id)) => {
                pending.identity = Some(Identity::User {
                    arn: caller.arn.clone(),
                    access_key_id: caller.access_key_id.clone(),
                });
                Ok((caller, id))
            }
            Err(e) => {
                // Refused: the record names the access key the request claimed.
                pending.identity = Some(Identity::Unknown {
                    access_key_id: claimed_access_key(&parts.headers),
                });
                Err(e)
            }
        }
    }

    /// An STS request (query protocol, signed for `sts`): GetCallerIdentity answers who the
    /// signing principal is; nothing else is served. Audited like a KMS request.
    ///
    /// # Errors
    /// `MissingAction`, `InvalidAction`, the SigV4 failures, `ServiceUnavailable` while sealed.
    fn answer_sts(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        pending: &mut Pending,
    ) -> Result<Vec<u8>, KmsError> {
        let action = sts::action(parts.uri.query(), body)?;
        self.check_answering(pending)?;
        pending.op = Some(action);
        let (caller, user_id) = self.authenticate(parts, body, "sts", pending)?;
        Ok(sts::get_caller_identity_response(
            &sts::CallerIdentity {
                arn: &caller.arn,
                user_id: &user_id,
                account: &self.config.account,
            },
            &pending.request_id,
        ))
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
        query: bool,
        pending: &mut Pending,
    ) -> Result<Vec<u8>, KmsError> {
        if !query && (request.method() != Method::POST || request.uri().path() != "/") {
            return Err(KmsError::UnknownOperation(
                "The AWS KMS API is served by POST / with an X-Amz-Target header.".to_owned(),
            ));
        }
        if let Some(len) = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > MAX_BODY as u64 {
                return Err(KmsError::RequestTooLarge(len, MAX_BODY));
            }
        }
        let (parts, body) = request.into_parts();
        let body =
            match tokio::time::timeout(IO_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) => {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        return Err(KmsError::RequestTooLarge(MAX_BODY as u64 + 1, MAX_BODY));
                    }
                    return Err(KmsError::Serialization(
                        "The request body could not be read.".to_owned(),
                    ));
                }
                Err(_) => {
                    return Err(KmsError::Serialization(
                        "Timed out reading the request body.".to_owned(),
                    ))
                }
            };
        if query {
            return self.answer_sts(&parts, &body, pending);
        }
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok());
        // Principal administration is authenticated and audited like KMS requests; the
        // custody operations are not (they run before any principal exists).
        let principal_op = target
            .and_then(|t| t.strip_prefix("Ekms."))
            .and_then(crate::kms::principal_ops::Operation::from_name);
        if let Some(admin) = target.and_then(|t| t.strip_prefix("Ekms.")) {
            if principal_op.is_none() {
                return self.admin(admin, &body, pending).await;
            }
        }
        self.check_answering(pending)?;
        let op = match principal_op {
            Some(_) => None,
            None => Some(dispatch::parse_target(target)?),
        };
        pending.op = principal_op
            .map(crate::kms::principal_ops::Operation::name)
            .or(op.map(dispatch::Operation::name));
        pending.audit_response = match (op, principal_op) {
            (Some(op), _) if op.audit_response() == dispatch::AuditResponse::Whole => {
                AuditAnswer::Whole
            }
            (_, Some(p)) if p.audits_response() => AuditAnswer::Public,
            _ => AuditAnswer::Nothing,
        };
        // One pass over the body for what authorization and the audit record read from it.
        let members = crate::json::Members::parse(&body);
        pending.request_parameters =
            crate::durability::audit::request_parameters_split(&body, members.as_ref());
        let (caller, _) = self.authenticate(&parts, &body, "kms", pending)?;
        let (result, touched) = {
            let identity = pending.identity.clone().unwrap_or(Identity::Unknown {
                access_key_id: None,
            });
            let sink = self.persister().map(|_| QueueChanges {
                persisters: &self.persister,
                issuer: std::cell::RefCell::default(),
                env: &self.env,
                config: &self.config,
                pending: &*pending,
                identity,
                placed: Cell::new(false),
                ticket: Cell::new(None),
                answer_key: std::cell::RefCell::default(),
            });
            // Memory-only: nothing to queue to; the changes are kept and submitted below.
            let kept = crate::kms::authz::Kept::default();
            let effects: &dyn crate::kms::authz::Effects = match &sink {
                Some(sink) => sink,
                None => &kept,
            };
            let ctx = Ctx::new(&self.state, &self.config, &self.env, &caller, effects);
            let mut result = match (op, principal_op) {
                (Some(op), _) => dispatch::handle(&ctx, op, &body),
                (None, Some(p)) => crate::kms::principal_ops::handle(&ctx, p, &body),
                (None, None) => Err(KmsError::Internal("no operation")),
            };
            if ctx.effects_failed() {
                result = Err(KmsError::Internal("a change could not be queued"));
            }
            let touched = kept.take_touched();
            let (answer_key, ticket, issuer) = match sink {
                Some(sink) => (
                    sink.answer_key.take(),
                    sink.ticket.get(),
                    sink.issuer.take(),
                ),
                None => (kept.take_answer_key(), None, None),
            };
            pending.answer_key = answer_key;
            pending.ticket = ticket;
            pending.issuer = issuer;
            (result, touched)
        };
        if result.is_ok()
            && matches!(
                principal_op,
                Some(
                    crate::kms::principal_ops::Operation::RotateTlsCa
                        | crate::kms::principal_ops::Operation::InstallTlsChain
                )
            )
        {
            // New connections get a leaf under the new CA (cross-signed during the overlap).
            self.serve_loaded_tls()?;
        }
        // Made durable (with the audit record) by `serve_request` before the answer: the client
        // hears of a change only once it is on disk.
        pending.touched = touched;
        result
    }
}

/// Accepts connections until `shutdown` resolves, serving each with HTTP/1.1 keep-alive,
/// behind TLS when `tls` is given.
///
/// # Errors
/// Only if accepting fails in a way that will not recover.
pub async fn serve(
    listener: Listener,
    service: Arc<Service>,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = service.clone();
        let tls = tls.clone();
        #[allow(clippy::disallowed_methods)] // the server is the shell: a task per connection
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, service, tls).await {
                tracing::debug!(peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn connection(
    stream: Stream,
    service: Arc<Service>,
    tls: Option<TlsAcceptor>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Everything written back, TLS records included, goes in frames the parent releases to
    // the client once the commit they wait for is durable.
    let hold = Arc::new(HoldCell::default());
    match tls {
        Some(acceptor) => {
            // TLS reads 4 KiB at a time from what it is given, so a 4 KiB request (6 KiB of
            // records) took two or three reads; through this buffer it takes one.
            let stream = HoldWriter::new(
                BufReader::with_capacity(TLS_READ_BUFFER, stream),
                hold.clone(),
            );
            let stream = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(stream)).await??;
            http(stream, service, hold).await
        }
        None => http(HoldWriter::new(stream, hold.clone()), service, hold).await,
    }
}

/// Marks an answer that read no state (a refusal while not serving): not held.
#[derive(Debug, Clone, Copy)]
struct Unheld;

/// Serves HTTP/1.1 on `io` until either side closes. When the server closes first (an
/// answer with `Connection: close`, such as to a body over [`MAX_BODY`]), the client may
/// still be sending: the write side is shut down, and what arrives is read and dropped for
/// a bounded time ([`LINGER`]), so the answer is not lost to a reset of unread bytes.
async fn http<I>(
    io: I,
    service: Arc<Service>,
    hold: Arc<HoldCell>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let svc = service_fn(move |request| {
        let service = service.clone();
        let hold = hold.clone();
        async move {
            let response = service.serve_request(request).await;
            // The answer goes out in frames the parent holds until what it depends on is
            // durable (an answer that read no state depends on nothing).
            if response.extensions().get::<Unheld>().is_none() {
                hold.raise(service.release_point());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let parts = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IO_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(MAX_BODY)
        .serve_connection(TokioIo::new(io), svc)
        .without_shutdown()
        .await?;
    let mut io = parts.io.into_inner();
    let _ = tokio::time::timeout(LINGER, async {
        io.shutdown().await?;
        let mut sink = vec![0u8; 16 * 1024];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match io.read(&mut sink).await? {
                0 => break,
                n => dropped += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    Ok(())
}
