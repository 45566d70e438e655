//! Audit assembly: the record of every KMS request (authenticated or refused), built from what
//! the request left ([`Pending`]) and its answer, and handed to the committer with the
//! request's changes.

use std::cell::Cell;



use crate::durability::audit::{Event, Identity};
use crate::error::KmsError;
use crate::durability::persist::{Persister, Touched};


/// A request's id and its audit record's id (random UUIDs), from one read of the random
/// source rather than one each.
pub(super) fn request_ids(entropy: &dyn crate::env::Entropy) -> (uuid::Uuid, uuid::Uuid) {
    let mut random = [0u8; 32];
    if entropy.fill(&mut random).is_err() {
        return (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    }
    let mut first = [0u8; 16];
    let mut second = [0u8; 16];
    first.copy_from_slice(&random[..16]);
    second.copy_from_slice(&random[16..]);
    (
        uuid::Builder::from_random_bytes(first).into_uuid(),
        uuid::Builder::from_random_bytes(second).into_uuid(),
    )
}

/// The key an answer names (`KeyId`, or `KeyMetadata.Arn`), for the audit record's
/// resources. Every other field is skipped unread: no copy of a ciphertext or a plaintext.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AnswerResource<'a> {
    #[serde(borrow, default)]
    key_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    key_metadata: Option<AnswerKeyMetadata<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerKeyMetadata<'a> {
    #[serde(borrow, default)]
    arn: Option<std::borrow::Cow<'a, str>>,
}

impl AnswerResource<'_> {
    fn arn(self) -> Option<String> {
        self.key_id
            .or(self.key_metadata.and_then(|m| m.arn))
            .map(std::borrow::Cow::into_owned)
    }
}

/// What of a successful answer the audit record keeps, from the operation tables.
#[derive(Default, Clone, Copy)]
pub(super) enum AuditAnswer {
    /// Nothing.
    #[default]
    Nothing,
    /// The whole answer.
    Whole,
    /// Its public fields ([`crate::kms::principal_ops::response_elements`]).
    Public,
}

/// A request's effects ([`crate::kms::authz::Effects`]): its changes queued under their write
/// locks, the first with a placeholder audit record that the request's full record replaces,
/// and the key its answer names.
pub(super) struct QueueChanges<'s> {
    /// The service's current session, looked up when a change is queued: under the write lock
    /// the change was made under, which a member's recovery holds while it replaces both the
    /// state and the session, so a change always goes to the session of the state it was made
    /// on.
    pub(super) persisters: &'s std::sync::RwLock<Option<Persister>>,
    /// The session the changes went to, for the request's audit record.
    pub(super) issuer: std::cell::RefCell<Option<Persister>>,
    pub(super) env: &'s crate::env::Env,
    pub(super) config: &'s crate::config::Config,
    pub(super) pending: &'s Pending,
    pub(super) identity: Identity,
    /// Whether the placeholder was queued.
    pub(super) placed: Cell<bool>,
    pub(super) ticket: Cell<Option<u64>>,
    pub(super) answer_key: std::cell::RefCell<Option<String>>,
}

impl crate::kms::authz::Effects for QueueChanges<'_> {
    fn answer_key(&self, arn: &str) {
        *self.answer_key.borrow_mut() = Some(arn.to_owned());
    }

    fn changed(&self, touched: Vec<Touched>) -> Result<(), KmsError> {
        // Built only for requests that change something: the record of a request whose
        // answer never came (its future dropped), if the full one does not arrive in time.
        let placeholder = (!self.placed.replace(true)).then(|| {
            const ENDED: KmsError =
                KmsError::Internal("the request ended before its answer was recorded");
            Event {
                request_id: &self.pending.request_id,
                event_id: self.pending.event_id,
                event_name: self.pending.op.unwrap_or("Unknown"),
                time_millis: self.env.now(),
                identity: &self.identity,
                config: self.config,
                request_parameters: self.pending.request_parameters.clone(),
                response: serde_json::Value::Null,
                error: Some(&ENDED),
                resources: Vec::new(),
                user_agent: self.pending.user_agent.as_deref(),
            }
            .record()
        });
        let persister = {
            let mut issuer = self.issuer.borrow_mut();
            if issuer.is_none() {
                *issuer = self
                    .persisters
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
            }
            issuer.clone().ok_or(KmsError::Internal("no store session"))?
        };
        let (_, ticket) = persister.enqueue_change(touched, placeholder)?;
        if ticket.is_some() {
            self.ticket.set(ticket);
        }
        Ok(())
    }
}

/// What a request leaves for the audit log and the store.
#[derive(Default)]
pub struct Pending {
    /// The request's id.
    pub(super) request_id: String,
    /// Its audit record's id.
    pub(super) event_id: uuid::Uuid,
    /// The ticket of its changes queued under their locks, for its audit record.
    pub(super) ticket: Option<u64>,
    /// The store session that issued the ticket.
    pub(super) issuer: Option<Persister>,
    /// The operation's name (`Encrypt`, `CreatePrincipal`).
    pub(super) op: Option<&'static str>,
    /// The custody operation's name (`Unseal`, `Status`), for the request's log line only:
    /// custody operations are not audited.
    pub(super) custody_op: Option<&'static str>,
    /// What of its answer the audit record keeps.
    pub(super) audit_response: AuditAnswer,
    pub(super) identity: Option<Identity>,
    /// The body's logged fields (`requestParameters`).
    pub(super) request_parameters: serde_json::Value,
    pub(super) user_agent: Option<String>,
    pub(super) touched: Vec<Touched>,
    /// The answer's `KeyId`, where the operation noted it (see [`Ctx::answer_key`]).
    pub(super) answer_key: Option<String>,
    /// Refused before it read any state (the service is not serving: sealed, or recovering):
    /// its answer depends on no change, so it is not held for one.
    pub(super) unserved: bool,
}

/// The access key id a request's Authorization header claims (for the audit of a refusal).
pub(super) fn claimed_access_key(headers: &http::HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let id = credential.split('/').next()?;
    (id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| id.to_owned())
}

/// A request's audit record, and whether the request was refused (unauthenticated, or a body
/// that did not parse: recorded with at most [`MAX_REFUSED_PARAMETERS`] of its parameters,
/// riding with the next commit instead of forcing one, so that flooding them costs little).
pub(super) struct Assembled {
    pub(super) record: crate::durability::audit::Record,
    pub(super) refused: bool,
}

/// Largest size of a refused request's parameters in its audit record.
pub const MAX_REFUSED_PARAMETERS: usize = 1024;

/// Assembles the audit record of a KMS request (authenticated or refused) from what it left
/// and its answer; `None` for a request that never named a KMS operation.
pub(super) fn assemble(
    pending: &mut Pending,
    result: &Result<Vec<u8>, KmsError>,
    now: crate::env::Millis,
    config: &crate::config::Config,
) -> Option<Assembled> {
    let (Some(op), Some(identity)) = (pending.op, &pending.identity) else {
        return None;
    };
    let answer = result.as_ref().ok();
    let resources = answer
        .and_then(|b| {
            pending.answer_key.take().or_else(|| {
                serde_json::from_slice::<AnswerResource<'_>>(b)
                    .ok()
                    .and_then(AnswerResource::arn)
            })
        })
        .into_iter()
        .collect();
    // Only these answers are logged, so only they are parsed whole: the others may be large
    // (ciphertexts) or secret (plaintexts, data keys).
    let whole = || answer.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    let response_elements = match pending.audit_response {
        AuditAnswer::Whole => whole().unwrap_or(serde_json::Value::Null),
        // Public fields only: never the new SecretAccessKey.
        AuditAnswer::Public => crate::kms::principal_ops::response_elements(whole().as_ref()),
        AuditAnswer::Nothing => serde_json::Value::Null,
    };
    let refused = matches!(identity, Identity::Unknown { .. })
        || matches!(result, Err(KmsError::Serialization(_)));
    let mut request_parameters = std::mem::take(&mut pending.request_parameters);
    if refused {
        request_parameters =
            crate::durability::audit::capped(request_parameters, MAX_REFUSED_PARAMETERS);
    }
    let record = Event {
        request_id: &pending.request_id,
        event_id: pending.event_id,
        event_name: op,
        time_millis: now,
        identity,
        config,
        request_parameters,
        response: response_elements,
        error: result.as_ref().err(),
        resources,
        user_agent: pending.user_agent.as_deref(),
    }
    .record();
    Some(Assembled { record, refused })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{request_ids, AnswerResource};
    use crate::env::Entropy;
    use crate::error::KmsError;

    /// Hands out the bytes 0, 1, 2, ... in order.
    struct Counting(std::sync::atomic::AtomicU8);

    impl Entropy for Counting {
        fn fill(&self, buf: &mut [u8]) -> Result<(), KmsError> {
            for b in buf {
                *b = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        }
    }

    /// Both ids are version-4 UUIDs made of one read's two halves.
    #[test]
    fn request_ids_split_one_read() {
        let entropy = Counting(std::sync::atomic::AtomicU8::new(0));
        let (request, event) = request_ids(&entropy);
        assert_eq!(request.to_string(), "00010203-0405-4607-8809-0a0b0c0d0e0f");
        assert_eq!(event.to_string(), "10111213-1415-4617-9819-1a1b1c1d1e1f");
        assert_eq!(request.get_version_num(), 4);
        assert_eq!(entropy.0.into_inner(), 32, "one read of 32 bytes");
    }

    fn arn_of(answer: &str) -> Option<String> {
        serde_json::from_str::<AnswerResource<'_>>(answer)
            .ok()
            .and_then(AnswerResource::arn)
    }

    /// The audit record's resource is the answer's KeyId, else its KeyMetadata.Arn; other
    /// fields (however large) are skipped.
    #[test]
    fn answer_resource_names_the_key() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/1234";
        let blob = "QUFB".repeat(2000);
        assert_eq!(
            arn_of(&format!(
                r#"{{"CiphertextBlob":"{blob}","KeyId":"{key}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#
            ))
            .as_deref(),
            Some(key)
        );
        assert_eq!(
            arn_of(&format!(
                r#"{{"KeyMetadata":{{"KeyId":"1234","Arn":"{key}","Enabled":true,"Tags":[{{"a":1}}]}}}}"#
            ))
            .as_deref(),
            Some(key)
        );
        assert_eq!(
            arn_of(r#"{"KeyId":"escaped\/id","KeyMetadata":{"Arn":"other"}}"#).as_deref(),
            Some("escaped/id")
        );
        assert_eq!(arn_of(r#"{"Plaintext":"c2VjcmV0"}"#), None);
        assert_eq!(arn_of(r#"{"Aliases":[],"Truncated":false}"#), None);
        assert_eq!(arn_of(r#"{"KeyId":7}"#), None);
    }
}
