//! The deployment record: the public facts of a deployment, the first record of the store,
//! readable before the domain key exists.

use tokio::io::{AsyncRead, AsyncWrite};

use ekms_shared::wire::v1::{self, Record, RecordKey, Request, Response};

use super::PersistError;

/// The store kind of the deployment record. It is not sealed: the enclave needs it before it
/// has the domain key, to tell its custodians' shares from anyone else's. A parent that alters
/// it can only make unsealing fail.
pub const DEPLOYMENT_KIND: u8 = 0;

/// The public facts of a deployment, written once at init.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    /// Format version (1).
    pub v: u8,
    /// The deployment id.
    pub deployment_id: String,
    /// M.
    pub threshold: u8,
    /// N.
    pub total: u8,
    /// SHA-384 commitment to the domain key.
    #[serde(with = "serde_bytes")]
    pub commitment: Vec<u8>,
    /// Each custodian's public key (SubjectPublicKeyInfo DER); share `i` is custodian `i - 1`.
    pub custodians: Vec<serde_bytes::ByteBuf>,
}

/// What the store says about itself before unseal.
#[derive(Debug)]
pub enum StoreState {
    /// Empty: waiting for init.
    Empty,
    /// Initialized, with its deployment record (absent if the parent dropped it).
    Initialized(Option<Deployment>),
}

/// Reads the first record of the store: nothing (empty), or the deployment record.
///
/// # Errors
/// [`PersistError`] if the channel fails.
pub async fn store_state<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<StoreState, PersistError> {
    v1::write_frame(
        stream,
        &Request::Load {
            after: None,
            limit: 1,
        },
    )
    .await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::Records { records, .. }) => Ok(match records.first() {
            None => StoreState::Empty,
            Some(r) if r.key.kind == DEPLOYMENT_KIND && r.sealed.len() <= 64 * 1024 => {
                StoreState::Initialized(serde_cbor::from_slice(&r.sealed).ok())
            }
            Some(_) => StoreState::Initialized(None),
        }),
        Some(Response::Error { message }) => Err(PersistError::Refused(message)),
        other => Err(PersistError::Refused(format!(
            "unexpected answer to Load: {other:?}"
        ))),
    }
}

/// Writes the deployment record, durably, before anything else is sealed.
///
/// # Errors
/// [`PersistError`] if the channel fails or the parent refuses.
pub async fn write_deployment<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    deployment: &Deployment,
) -> Result<(), PersistError> {
    let bytes = serde_cbor::to_vec(deployment).map_err(|_| PersistError::Seal("deployment"))?;
    let commit = Request::Commit {
        seq: 0,
        base: None,
        puts: vec![Record {
            key: RecordKey {
                kind: DEPLOYMENT_KIND,
                id: b"deployment".to_vec(),
            },
            sealed: bytes,
        }],
        deletes: Vec::new(),
        audit: Vec::new(),
    };
    v1::write_frame(stream, &commit).await?;
    match v1::read_frame::<_, Response>(stream).await? {
        Some(Response::Committed { seq: 0 }) => Ok(()),
        Some(Response::Error { message }) => Err(PersistError::Refused(message)),
        other => Err(PersistError::Refused(format!(
            "unexpected answer to the deployment commit: {other:?}"
        ))),
    }
}
