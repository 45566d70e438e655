//! The custody targets of `Ekms.*` (not principal administration, which the KMS core
//! serves): attestation, status, the signed audit head, and the initialize and unseal flow.
//! They are not authenticated as principals: they run before any principal exists, and what
//! they accept is checked by the custody machine (signed, attested shares).

use std::sync::atomic::Ordering;
use std::sync::Arc;



use crate::custody::admin::Phase;
use crate::durability::audit::{Event, Head, Identity};
use crate::error::KmsError;
use crate::durability::persist::{self, Touched};
use crate::durability::seal::manifest::{Manifest, Refusal};

use super::audit::request_ids;

/// Tries a member makes to recover its store session before it stops.
pub const RECOVERY_TRIES: u32 = 10;

/// Why one try of [`Service::recover`] failed.
enum TryFailed {
    /// Try again, not counting it: no store channel opened (the parent is away), or the store
    /// refused the recovery's commit for now or closed the channel again.
    Wait(KmsError),
    /// Try again, counting it against [`RECOVERY_TRIES`].
    Retry(KmsError),
    /// Stop: the store is older than what this enclave knows durable.
    Stop(KmsError),
}
use super::server::{phase_code, Service};

/// A custody target, `Ekms.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    GetAttestation,
    AuditHead,
    Status,
    GetTlsAttestation,
    Initialize,
    Unseal,
    Join,
    CompleteJoin,
    ListMeasurements,
    ChangeMeasurements,
}

impl Target {
    fn from_name(name: &str) -> Option<Target> {
        Some(match name {
            "GetAttestation" => Target::GetAttestation,
            "AuditHead" => Target::AuditHead,
            "Status" => Target::Status,
            "GetTlsAttestation" => Target::GetTlsAttestation,
            "Initialize" => Target::Initialize,
            "Unseal" => Target::Unseal,
            "Join" => Target::Join,
            "CompleteJoin" => Target::CompleteJoin,
            "ListMeasurements" => Target::ListMeasurements,
            "ChangeMeasurements" => Target::ChangeMeasurements,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Target::GetAttestation => "GetAttestation",
            Target::AuditHead => "AuditHead",
            Target::Status => "Status",
            Target::GetTlsAttestation => "GetTlsAttestation",
            Target::Initialize => "Initialize",
            Target::Unseal => "Unseal",
            Target::Join => "Join",
            Target::CompleteJoin => "CompleteJoin",
            Target::ListMeasurements => "ListMeasurements",
            Target::ChangeMeasurements => "ChangeMeasurements",
        }
    }
}

impl Service {
    pub(super) async fn admin(
        &self,
        name: &str,
        body: &[u8],
        pending: &mut super::audit::Pending,
    ) -> Result<Vec<u8>, KmsError> {
        let Some(target) = Target::from_name(name) else {
            return Err(KmsError::UnknownOperation(format!(
                "Ekms.{name} is not an operation of this service."
            )));
        };
        // For the request's log line only: custody operations are not audited.
        pending.custody_op = Some(target.name());
        if target == Target::Status {
            return self.status().await;
        }
        let mut custody = self.custody.lock().await;
        match target {
            Target::GetAttestation => custody.attestation(body, self.env.attester.as_ref()),
            Target::AuditHead => {
                let persister = self.persister().ok_or_else(|| {
                    KmsError::InvalidState(
                        "ekms keeps no audit log while sealed or memory-only.".to_owned(),
                    )
                })?;
                #[derive(serde::Deserialize, Default)]
                #[serde(rename_all = "PascalCase", default)]
                struct HeadRequest {
                    nonce: Option<crate::json::Blob>,
                }
                let req: HeadRequest = serde_json::from_slice(body).unwrap_or_default();
                let nonce = crate::kms::validate::required("nonce", req.nonce)?;
                crate::kms::validate::blob_len("nonce", &nonce.0, 16, 1024)?;
                // The head covers every record queued before this request (whose answers
                // clients may already hold).
                persister
                    .durable_through(persister.release_point().seq)
                    .await?;
                let signed = persister.signed_audit_head(&nonce.0)?;
                let mut answer = serde_json::json!({
                    "Seq": signed.head.seq,
                    "Hash": hex::encode(signed.head.hash),
                    "Signature": crate::json::b64(&signed.signature),
                    "PublicKey": crate::json::b64(&signed.public_key),
                    "AttestationDocument": crate::json::b64(&signed.attestation_document),
                });
                if let Some(member) = signed.member {
                    // Which member's chain the head is of (several enclaves share the store).
                    answer["Member"] = member.into();
                }
                serde_json::to_vec(&answer).map_err(|_| KmsError::Internal("response encoding"))
            }
            Target::Status => self.status_of(&custody),
            Target::GetTlsAttestation => self.tls_attestation(body),
            Target::Initialize => {
                let init = custody.initialize(
                    body,
                    self.env.entropy.as_ref(),
                    self.env.attester.as_ref(),
                )?;
                let mut stream = self.store.lock().await.take().ok_or_else(|| {
                    KmsError::InvalidState("ekms runs without a durable store.".to_owned())
                })?;
                persist::write_deployment(&mut stream, &init.deployment).await?;
                self.state
                    .principals_mut()
                    .insert(
                        init.admin.name.clone(),
                        init.admin.access_key_id.clone(),
                        init.admin.secret_access_key.to_string(),
                        true,
                        Some(crate::access::policy::ALLOW_ALL_IDENTITY_POLICY.to_owned()),
                        &self.config,
                    )
                    .map_err(|why| KmsError::Validation(format!("adminName: {why}")))?;
                self.start_persister(
                    stream,
                    Arc::new(init.domain_key),
                    Manifest::empty(),
                    Head::GENESIS,
                )
                    .await?;
                self.persist(vec![Touched::Principal(init.admin.name.clone())], None)
                    .await?;
                self.serve_deployment_tls(None).await?;
                custody.unsealed(Vec::new());
                self.phase
                    .store(phase_code(Phase::Unsealed), Ordering::SeqCst);
                tracing::info!("initialized: domain key made and split; serving");
                Ok(init.response)
            }
            Target::Join => {
                drop(custody);
                self.join(body).await
            }
            Target::ListMeasurements => {
                self.check_serving()?;
                let now = self.system_now();
                let own = crate::custody::join::own_pcrs(
                    self.env.attester.as_ref(),
                    &self.config.recipient_anchors,
                    now,
                )?;
                let mut answer = self.state.measurements().to_json();
                answer["RunningImage"] = ekms_shared::attestation::pcr_set_to_json(&own);
                serde_json::to_vec(&answer).map_err(|_| KmsError::Internal("response encoding"))
            }
            Target::ChangeMeasurements => {
                self.check_serving()?;
                let deployment = custody
                    .deployment()
                    .cloned()
                    .ok_or(KmsError::Internal("an unsealed enclave without a deployment record"))?;
                drop(custody);
                self.change_measurements(&deployment, body).await
            }
            Target::CompleteJoin => {
                if !self.config.member {
                    return Err(KmsError::InvalidState(
                        "Only a member of a shared store (--member) joins; this enclave is unsealed by its custodians.".to_owned(),
                    ));
                }
                let now = self.system_now();
                let (domain, head, member) = custody.complete_join(
                    body,
                    &self.config.recipient_anchors,
                    now,
                )?;
                self.open_store(&mut custody, domain, Some((head, member)))
                    .await
            }
            Target::Unseal => {
                let (domain, response) = custody.unseal(body)?;
                let Some(domain) = domain else {
                    return Ok(response);
                };
                self.open_store(&mut custody, domain, None).await
            }
        }
    }

    /// `Ekms.Status`. While an unseal or a join loads the store (under the custody lock, for
    /// as long as the store takes), the status from before the load with `RecordsLoaded`, the
    /// stored records received so far ([`super::loading`]); otherwise the custody state's.
    async fn status(&self) -> Result<Vec<u8>, KmsError> {
        loop {
            // Made before the check, so a load that begins in between wakes it.
            let began = self.loading.began();
            if let Some(status) = self.loading.status() {
                return serde_json::to_vec(&self.with_memory(status))
                    .map_err(|_| KmsError::Internal("status encoding"));
            }
            tokio::select! {
                custody = self.custody.lock() => return self.status_of(&custody),
                () = began => {}
            }
        }
    }

    /// The custody state's status, with the use of the memory budget.
    fn status_of(&self, custody: &crate::custody::admin::Custody) -> Result<Vec<u8>, KmsError> {
        let status: serde_json::Value = serde_json::from_slice(&custody.status_json()?)
            .map_err(|_| KmsError::Internal("status encoding"))?;
        serde_json::to_vec(&self.with_memory(status))
            .map_err(|_| KmsError::Internal("status encoding"))
    }

    /// `status` with the use against the memory budget: counts only.
    fn with_memory(&self, mut status: serde_json::Value) -> serde_json::Value {
        status["MemoryUsedBytes"] = self.state.read().bytes().into();
        status["MemoryBudgetBytes"] = self.config.memory_budget.into();
        status
    }

    /// `Ekms.Join` on a running member: releases the domain key to the sealed enclave whose
    /// boot-key document the body carries, if it runs this image ([`crate::custody::join`]);
    /// recorded in this member's audit chain.
    async fn join(&self, body: &[u8]) -> Result<Vec<u8>, KmsError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct JoinRequest {
            attestation_document: Option<crate::json::Blob>,
        }
        if !self.config.member || self.phase() != Phase::Unsealed {
            return Err(KmsError::InvalidState(
                "Only an unsealed member of a shared store lets enclaves join.".to_owned(),
            ));
        }
        let req: JoinRequest = serde_json::from_slice(body)
            .map_err(|_| KmsError::Serialization("The request body is not valid JSON.".to_owned()))?;
        let document = crate::kms::validate::required("attestationDocument", req.attestation_document)?;
        crate::kms::validate::blob_len("attestationDocument", &document.0, 1, 64 * 1024)?;
        let persister = self
            .persister()
            .ok_or_else(|| KmsError::InvalidState("ekms is not serving a store.".to_owned()))?;
        let domain = self
            .domain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(KmsError::Internal("a member without its domain key"))?;
        let now = self.system_now();
        let head = persister.base();
        let allowed = self.state.measurements().sets;
        let released = crate::custody::join::release(
            &domain,
            head,
            &document.0,
            &allowed,
            self.env.attester.as_ref(),
            &self.config.recipient_anchors,
            now,
        )?;
        // Every release of the domain key is on the record, durably, before it goes out.
        let record = crate::durability::audit::Record::from_value(&serde_json::json!({
            "eventName": "Join",
            "eventSource": "ekms.amazonaws.com",
            "eventTime": crate::durability::audit::iso8601(self.env.now()),
            "requestParameters": { "joinerPcr0": released.joiner_pcr0 },
            "responseElements": { "head": head },
        }));
        persister.persist(Vec::new(), Some(record)).await?;
        tracing::info!(joiner_pcr0 = %released.joiner_pcr0, head, "released the domain key to a joining enclave");
        serde_json::to_vec(&serde_json::json!({
            "Envelope": crate::json::b64(&released.envelope),
            "AttestationDocument": crate::json::b64(&released.document),
            "Head": head,
        }))
        .map_err(|_| KmsError::Internal("response encoding"))
    }

    /// The enclave clock as a `SystemTime`, for attestation documents' validity.
    fn system_now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(self.env.now()).unwrap_or(0))
    }

    /// Refuses unless unsealed with a store.
    fn check_serving(&self) -> Result<(), KmsError> {
        if self.phase() == Phase::Unsealed && self.persister().is_some() {
            Ok(())
        } else {
            Err(KmsError::InvalidState(
                "ekms is not serving a store: unseal it first.".to_owned(),
            ))
        }
    }

    /// `Ekms.ChangeMeasurements`: the change, if M custodians signed it for the current version
    /// ([`crate::custody::measurements::change`]), checked and made under the keys write lock
    /// (which a member's adoption of another's commit takes too, so no change is made on
    /// measurements another member replaced), durable and on the record before the answer.
    async fn change_measurements(
        &self,
        deployment: &crate::durability::persist::Deployment,
        body: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let now = self.system_now();
        let own = crate::custody::join::own_pcrs(
            self.env.attester.as_ref(),
            &self.config.recipient_anchors,
            now,
        )?;
        let (hold, next, operation, set) = {
            let _keys = self.state.write();
            let current = self.state.measurements();
            let (mut next, operation, set) =
                crate::custody::measurements::change(&current, deployment, body)?;
            // Once changed, the set lists every image that may be a member: the one running
            // the deployment now goes in with the first addition, so that members of a new
            // image trust those of this one during an upgrade.
            if operation == "add" && !next.sets.contains(&own) && set != own {
                next.sets.insert(0, own);
            }
            self.state.set_measurements(next.clone());
            let hold = self.enqueue_locked(vec![Touched::Measurements])?;
            (hold, next, operation, set)
        };
        let record = crate::durability::audit::Record::from_value(&serde_json::json!({
            "eventName": "ChangeMeasurements",
            "eventSource": "ekms.amazonaws.com",
            "eventTime": crate::durability::audit::iso8601(self.env.now()),
            "requestParameters": {
                "operation": operation,
                "pcrs": ekms_shared::attestation::pcr_set_to_json(&set),
            },
            "responseElements": { "version": next.version },
        }));
        self.persist(Vec::new(), Some(record)).await?;
        self.wait_durable(hold).await?;
        tracing::info!(operation, version = next.version, "the measurements allowed to join changed");
        serde_json::to_vec(&next.to_json()).map_err(|_| KmsError::Internal("response encoding"))
    }

    /// Loads the store with `domain` (from custodians' shares, or a member that let this
    /// enclave join: then `witness` is that member's last commit, and a store at any other is
    /// refused) and starts serving it.
    async fn open_store(
        &self,
        custody: &mut crate::custody::admin::Custody,
        domain: crate::durability::seal::DomainKey,
        witness: Option<(u64, ekms_shared::attestation::PcrSet)>,
    ) -> Result<Vec<u8>, KmsError> {
        let mut guard = self.store.lock().await;
        let mut stream = guard.take().ok_or_else(|| {
            KmsError::InvalidState("ekms runs without a durable store.".to_owned())
        })?;
        // Until this returns, `Ekms.Status` shows the status from now and the records loaded.
        let before = serde_json::from_slice(&custody.status_json()?)
            .map_err(|_| KmsError::Internal("status encoding"))?;
        let progress = self.loading.begin(before);
        let loading =
            persist::load_counting(&mut stream, &domain, &self.config, &progress.records);
        let loaded = match loading.await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "loading the sealed store failed");
                *guard = Some(stream);
                return Err(KmsError::Internal("loading the sealed store failed"));
            }
        };
        if let Some(root) = loaded
            .refused
            .iter()
            .find(|r| matches!(r, Refusal::Root(_)))
        {
            *guard = Some(stream);
            let why: Vec<String> = loaded.refused.iter().map(ToString::to_string).collect();
            tracing::error!(?why, "the store's manifest cannot be trusted: load refused");
            return Err(KmsError::InvalidState(format!(
                "The store cannot be trusted, so nothing was loaded ({root}): the parent serves another, a damaged or a tampered store."
            )));
        }
        if let Some((witness, member)) = witness {
            // The member must run this enclave's image or one the store allows (an upgrade):
            // only the store, opened with the key, can say which.
            let allowed = loaded
                .measurements
                .as_ref()
                .map(|m| m.sets.clone())
                .unwrap_or_default();
            let now = self.system_now();
            if !crate::custody::join::member_allowed(
                &member,
                &allowed,
                self.env.attester.as_ref(),
                &self.config.recipient_anchors,
                now,
            )? {
                *guard = Some(stream);
                return Err(KmsError::Validation(
                    "The member that let this enclave join runs an image that is neither this one nor one the custodians allowed: not trusted.".to_owned(),
                ));
            }
            // The member that let this enclave join vouched for its last commit: a store at
            // another is older (rolled back by the parent) or moved on since; either way not
            // taken, and the join can be made again.
            let seq = loaded.manifest.seq();
            if seq != witness {
                *guard = Some(stream);
                tracing::warn!(seq, witness, "the store is not at the commit the member named");
                return Err(KmsError::InvalidState(format!(
                    "The store's last commit is {seq}, but the member that let this enclave join is at {witness}: the store moved on since (join again) or the parent serves an older one."
                )));
            }
        }
        let refused: Vec<String> = loaded.refused.iter().map(ToString::to_string).collect();
        for r in &refused {
            tracing::warn!(refused = %r, "sealed record refused");
        }
        self.state
            .principals_mut()
            .replace_sealed(&loaded.principals, &self.config);
        let renames = loaded.renames();
        let tls_ca = loaded.tls_ca;
        if let Some(operator) = loaded.tls_operator {
            self.state.set_tls_operator(operator);
        }
        self.state
            .set_measurements(loaded.measurements.unwrap_or_default());
        let keys = loaded.keys.key_count();
        *self.state.write() = loaded.keys;
        self.start_persister(stream, Arc::new(domain), loaded.manifest, loaded.audit_head)
            .await?;
        // Records from when names were record ids move under their names' digests
        // before anything is served.
        if !renames.is_empty() {
            tracing::info!(
                records = renames.len() / 2,
                "sealing aliases and principals again under keyed record ids"
            );
            self.persist(renames, None).await?;
        }
        if !refused.is_empty() {
            // What was refused is on the record, not only in this process's log.
            self.persist(Vec::new(), Some(self.unseal_record(&refused)))
                .await?;
        }
        self.serve_deployment_tls(tls_ca).await?;
        self.state.set_refused(refused.clone());
        custody.unsealed(refused);
        self.phase
            .store(phase_code(Phase::Unsealed), Ordering::SeqCst);
        tracing::info!(keys, "unsealed: every sealed record loaded");
        custody.status_json()
    }

    /// Recovers a service whose store session failed, in place: a member (its commit was
    /// refused because another member committed first, or the store could not be reached), or
    /// a lone enclave whose store refused a commit for now (its audit disk is full) or whose
    /// store channel closed (its parent restarted). Answers
    /// `DependencyTimeout` meanwhile; opens new store channels, loads and verifies the store as
    /// an unseal does (with the domain key it kept) and, under the state's write locks, takes
    /// that state and a new session together; then writes a `Recover` audit record through the
    /// new session, and serves again only once the store acknowledged it. The failed
    /// session's answers are never released (the parent drops them with it).
    ///
    /// A lone enclave stops rather than take a store older than the last commit it knows
    /// durable, or at that commit with another audit head: no honest parent serves one (it is a
    /// replay of an earlier state, or commits acknowledged and never written). Tries that found
    /// no store channel (the parent is away) or a store that refused for now do not count
    /// against [`RECOVERY_TRIES`]: service resumes by itself whenever the parent is back and
    /// takes commits. Waits between tries double up to 5 s.
    ///
    /// # Errors
    /// An older store, or [`RECOVERY_TRIES`] other failures: the service then stops
    /// (fail-stop).
    pub async fn recover(&self) -> Result<(), KmsError> {
        self.recovering.store(true, Ordering::SeqCst);
        self.freshness.reset();
        let address = self
            .store_address
            .clone()
            .ok_or(KmsError::Internal("a service without a store address"))?;
        let domain = self
            .domain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(KmsError::Internal("a service without its domain key"))?;
        // What this enclave knows durable: the failed session's last acknowledged commit, or
        // where it started. (A member's own commits are not the store's sequence: others
        // commit too, so it has no such floor.)
        let floor = if self.config.member {
            None
        } else {
            self.persister().and_then(|p| p.acknowledged()).or(*self
                .floor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner))
        };
        let mut wait = std::time::Duration::from_millis(100);
        let mut failures = 0;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let counted = match self.reload_session(&address, &domain, floor).await {
                Ok(keys) => {
                    self.recovering.store(false, Ordering::SeqCst);
                    tracing::info!(attempt, keys, "recovered: took the store's state in a new session");
                    return Ok(());
                }
                Err(TryFailed::Stop(e)) => return Err(e),
                Err(TryFailed::Wait(e)) => {
                    tracing::warn!(attempt, error = %e, "recovering: the store is not taking commits yet");
                    false
                }
                Err(TryFailed::Retry(e)) => {
                    tracing::warn!(attempt, error = %e, "recovering from the store failed");
                    true
                }
            };
            if counted {
                failures += 1;
                if failures >= RECOVERY_TRIES {
                    return Err(KmsError::Internal("could not recover from the store"));
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
    }

    /// One try of [`Service::recover`]; the number of keys taken.
    async fn reload_session(
        &self,
        address: &ekms_shared::transport::Address,
        domain: &Arc<crate::durability::seal::DomainKey>,
        floor: Option<(u64, crate::durability::audit::Head)>,
    ) -> Result<usize, TryFailed> {
        let connect = || async {
            ekms_shared::transport::connect(address).await.map_err(|e| {
                tracing::warn!(error = %e, %address, "cannot open a store channel");
                KmsError::Internal("cannot open a store channel")
            })
        };
        let mut stream = connect().await.map_err(TryFailed::Wait)?;
        let follow = if self.config.member {
            Some(connect().await.map_err(TryFailed::Wait)?)
        } else {
            None
        };
        let loaded = persist::load(&mut stream, domain, &self.config)
            .await
            .map_err(|e| TryFailed::Retry(e.into()))?;
        if !loaded.refused.is_empty() {
            let why: Vec<String> = loaded.refused.iter().map(ToString::to_string).collect();
            tracing::error!(?why, "the store's state did not verify: not taken");
            return Err(TryFailed::Retry(KmsError::Internal(
                "the store's state did not verify",
            )));
        }
        if let Some((seq, head)) = floor {
            let at = loaded.manifest.seq();
            if at < seq || (at == seq && loaded.audit_head != head) {
                tracing::error!(
                    store = at,
                    durable = seq,
                    "the store is older than what this enclave knows durable: not taken; stopping"
                );
                return Err(TryFailed::Stop(KmsError::Internal(
                    "the store is older than what this enclave knows durable",
                )));
            }
        }
        let keys = loaded.keys.key_count();
        let persister = self
            .open_session(stream, domain.clone(), loaded.manifest, loaded.audit_head)
            .await
            .map_err(TryFailed::Retry)?;
        {
            // Changes are queued under these locks to the session looked up under them: every
            // change from now on is made on this state and goes to this session.
            let mut store = self.state.write();
            let mut principals = self.state.principals_mut();
            *store = loaded.keys;
            principals.replace_sealed(&loaded.principals, &self.config);
            if let Some(operator) = loaded.tls_operator {
                self.state.set_tls_operator(operator);
            }
            self.state
                .set_measurements(loaded.measurements.unwrap_or_default());
            *self
                .persister
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(persister.clone());
        }
        if let Some(follow) = follow {
            *self.follow_channel.lock().await = Some(follow);
        }
        self.watch_session(persister.clone(), domain.clone()).await;
        // Serve again only once the store takes commits: this record is the proof.
        match self
            .persist(Vec::new(), Some(self.recover_record(keys)))
            .await
        {
            Ok(()) => Ok(keys),
            Err(e) if persister.recoverable() => Err(TryFailed::Wait(e)),
            Err(e) => Err(TryFailed::Retry(e)),
        }
    }

    /// The audit record of an unseal that refused records: how many, and which (their ids are
    /// key ids and keyed digests, never names).
    fn unseal_record(&self, refused: &[String]) -> crate::durability::audit::Record {
        self.service_record(
            "Unseal",
            serde_json::json!({
                "refusedRecordCount": refused.len(),
                "refusedRecords": refused,
            }),
        )
    }

    /// The audit record of a recovery: the service took the store's state again, in a new
    /// session, with this many keys.
    fn recover_record(&self, keys: usize) -> crate::durability::audit::Record {
        self.service_record("Recover", serde_json::json!({ "keyCount": keys }))
    }

    /// An audit record of the service's own doing (no principal asked): `event_name`, with
    /// `response` as its response elements.
    fn service_record(
        &self,
        event_name: &'static str,
        response: serde_json::Value,
    ) -> crate::durability::audit::Record {
        let (request_id, event_id) = request_ids(self.env.entropy.as_ref());
        Event {
            request_id: &request_id.to_string(),
            event_id,
            event_name,
            time_millis: self.env.now(),
            identity: &Identity::Unknown {
                access_key_id: None,
            },
            config: &self.config,
            request_parameters: serde_json::Value::Null,
            response,
            error: None,
            resources: Vec::new(),
            user_agent: None,
        }
        .record()
    }

    /// `Ekms.GetTlsAttestation {Nonce}` (unauthenticated): an attestation document for the
    /// client's nonce whose user data is [`crate::keys::tls::binding`] of the leaf and CA served now,
    /// so a client can check, on the connection it asked on, that the certificate it was shown
    /// is the attested enclave's.
    fn tls_attestation(&self, body: &[u8]) -> Result<Vec<u8>, KmsError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct TlsAttestationRequest {
            nonce: Option<crate::json::Blob>,
        }
        let identity = self.tls.as_ref().ok_or_else(|| {
            KmsError::UnsupportedOperation(
                "ekms serves plain HTTP: there is no TLS identity to attest.".to_owned(),
            )
        })?;
        let req: TlsAttestationRequest = if body.iter().all(u8::is_ascii_whitespace) {
            TlsAttestationRequest::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| KmsError::Serialization(format!("Could not parse the request: {e}")))?
        };
        let nonce = crate::kms::validate::required("nonce", req.nonce)?;
        crate::kms::validate::blob_len("nonce", &nonce.0, 16, 512)?;
        let served = identity.current();
        let document = self
            .env
            .attester
            .attest(Some(&served.binding()), Some(&nonce.0), None)
            .map_err(|e| {
                tracing::warn!(error = %e, "attestation failed");
                KmsError::Internal("attestation failed")
            })?;
        serde_json::to_vec(&serde_json::json!({
            "AttestationDocument": crate::json::b64(&document),
            "State": self.phase().as_str(),
        }))
        .map_err(|_| KmsError::Internal("response encoding"))
    }
}
