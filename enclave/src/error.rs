//! Every failure a KMS request can meet, and the one place that maps it to an AWS error code.
//!
//! Messages are shown to the caller: they never carry key material, plaintext or secrets.
//! Every failure to open a ciphertext is the same opaque [`KmsError::InvalidCiphertext`].


/// A failed KMS request.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// A field violates its documented constraint (length, range, enum, exclusivity).
    #[error("{0}")]
    Validation(String),
    /// The body is not the JSON the operation expects.
    #[error("{0}")]
    Serialization(String),
    /// The named key or alias does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key's state does not allow the operation (for example pending deletion).
    #[error("{0}")]
    InvalidState(String),
    /// The ciphertext could not be opened. Deliberately says nothing about why.
    #[error("The ciphertext is invalid, or was not encrypted under the given key and encryption context.")]
    InvalidCiphertext,
    /// VerifyMac: the tag is not the HMAC of the message under the key and algorithm.
    #[error("The MAC does not match the message, key and MAC algorithm.")]
    InvalidMac,
    /// Decrypt named a key other than the one that encrypted the ciphertext.
    #[error("{0}")]
    IncorrectKey(String),
    /// The alias (or other named resource) already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The alias name is malformed or reserved.
    #[error("{0}")]
    InvalidAliasName(String),
    /// The pagination marker is not one this service issued.
    #[error("{0}")]
    InvalidMarker(String),
    /// A tag key or value is invalid.
    #[error("{0}")]
    Tag(String),
    /// The key cannot be used for this operation or algorithm.
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// A known KMS operation (or option) this service does not offer yet.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The target is not a KMS operation at all (or, over STS's query protocol, not an action
    /// of the version asked for).
    #[error("{0}")]
    UnknownOperation(String),
    /// A query-protocol (STS) request names no `Action`.
    #[error("Missing Action")]
    MissingAction,
    /// `DryRun` was set and the request would have succeeded.
    #[error("The request would have succeeded, but the DryRun option is set.")]
    DryRun,
    /// Verify: the signature does not verify for this key, message and algorithm.
    #[error("The signature verification failed.")]
    InvalidSignature,
    /// ImportKeyMaterial: the import token is unknown, used, or another key's.
    #[error("{0}")]
    InvalidImportToken(String),
    /// ImportKeyMaterial: the import token's 24 hours have passed.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// ImportKeyMaterial: not the material this key had before (or not valid for the key).
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// A configured bound (number of keys, aliases, tags) was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// The request body exceeds the service's limit.
    #[error("Request body of {0} bytes exceeds the limit of {1} bytes")]
    RequestTooLarge(u64, usize),
    /// The request could not be authenticated.
    #[error(transparent)]
    Auth(#[from] SigV4Error),
    /// The policies and grants do not allow the request.
    #[error("{0}")]
    AccessDenied(String),
    /// A key policy is malformed, or would lock its caller out.
    #[error("{0}")]
    MalformedPolicy(String),
    /// A grant token is not one this service issued.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// A grant id is not of the shape this service issues.
    #[error("{0}")]
    InvalidGrantId(String),
    /// A member of several sharing the store has not seen the store's head within its bound:
    /// it refuses rather than answer from a state that may be stale. Retryable.
    #[error("{0}")]
    DependencyTimeout(String),
    /// A fault on our side (for example the random source failed). Details go to the log only.
    #[error("An internal error occurred.")]
    Internal(&'static str),
}

/// How AWS begins the message of a `ValidationException` for one bad member.
pub const ONE_VALIDATION_ERROR: &str = "1 validation error detected: ";

impl KmsError {
    /// A `ValidationException` for one bad member, worded as AWS words it:
    /// `1 validation error detected: <detail>`.
    pub fn one_validation_error(detail: impl std::fmt::Display) -> KmsError {
        KmsError::Validation(format!("{ONE_VALIDATION_ERROR}{detail}"))
    }

    /// `1 validation error detected: Value at '<field>' failed to satisfy constraint:
    /// <constraint>`.
    pub fn invalid_field(field: &str, constraint: impl std::fmt::Display) -> KmsError {
        KmsError::one_validation_error(format_args!(
            "Value at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// `1 validation error detected: Value '<value>' at '<field>' failed to satisfy
    /// constraint: <constraint>`: AWS names the value when it is not sensitive (enum values,
    /// numbers), and says `Value null` for a required member that is absent.
    pub fn invalid_value(
        field: &str,
        value: impl std::fmt::Display,
        constraint: impl std::fmt::Display,
    ) -> KmsError {
        KmsError::one_validation_error(format_args!(
            "Value {value} at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// The message sent to the client, or `None` where AWS sends none: a ciphertext that does
    /// not open, a signature or a MAC that does not verify (AWS answers these with the code
    /// alone; [`std::fmt::Display`] still describes them for logs and the audit record).
    pub fn client_message(&self) -> Option<String> {
        match self {
            KmsError::InvalidCiphertext | KmsError::InvalidSignature | KmsError::InvalidMac => None,
            other => Some(other.to_string()),
        }
    }

    /// The AWS error code sent as `__type` and `x-amzn-ErrorType`.
    pub fn aws_code(&self) -> &'static str {
        match self {
            KmsError::Validation(_) | KmsError::RequestTooLarge(..) => "ValidationException",
            KmsError::Serialization(_) => "SerializationException",
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::InvalidMac => "KMSInvalidMacException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::Tag(_) => "TagException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::UnknownOperation(_) => "UnknownOperationException",
            KmsError::MissingAction => "MissingAction",
            KmsError::DryRun => "DryRunOperationException",
            KmsError::InvalidImportToken(_) => "InvalidImportTokenException",
            KmsError::ExpiredImportToken(_) => "ExpiredImportTokenException",
            KmsError::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::InvalidSignature => "KMSInvalidSignatureException",
            KmsError::Auth(e) => match e {
                SigV4Error::MissingAuthenticationToken => "MissingAuthenticationToken",
                SigV4Error::IncompleteSignature(_) => "IncompleteSignature",
                SigV4Error::InvalidSignature(_) => "InvalidSignatureException",
                SigV4Error::UnrecognizedClient => "UnrecognizedClientException",
                SigV4Error::RequestExpired(_) => "RequestExpired",
            },
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::MalformedPolicy(_) => "MalformedPolicyDocumentException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::DependencyTimeout(_) => "DependencyTimeoutException",
            KmsError::Internal(_) => "KMSInternalException",
        }
    }

    /// HTTP status: 400 for client faults, 500 for ours.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::Internal(_) => 500,
            KmsError::DependencyTimeout(_) => 503,
            _ => 400,
        }
    }

    /// The error code of the same failure answered over STS's query protocol (`api::sts`):
    /// STS's names for the SigV4 failures, `InvalidAction` for an action it does not have,
    /// `ServiceUnavailable` while ekms is sealed.
    pub fn sts_code(&self) -> &'static str {
        match self {
            KmsError::Auth(e) => match e {
                SigV4Error::MissingAuthenticationToken => "MissingAuthenticationToken",
                SigV4Error::IncompleteSignature(_) => "IncompleteSignature",
                SigV4Error::InvalidSignature(_) => "SignatureDoesNotMatch",
                SigV4Error::UnrecognizedClient => "InvalidClientTokenId",
                SigV4Error::RequestExpired(_) => "RequestExpired",
            },
            KmsError::UnknownOperation(_) => "InvalidAction",
            KmsError::MissingAction => "MissingAction",
            KmsError::InvalidState(_) | KmsError::DependencyTimeout(_) => "ServiceUnavailable",
            KmsError::Internal(_) => "InternalFailure",
            KmsError::AccessDenied(_) => "AccessDenied",
            _ => "ValidationError",
        }
    }

    /// The HTTP status of the same failure answered over STS's query protocol.
    pub fn sts_http_status(&self) -> u16 {
        match self {
            KmsError::Auth(
                SigV4Error::MissingAuthenticationToken
                | SigV4Error::InvalidSignature(_)
                | SigV4Error::UnrecognizedClient,
            )
            | KmsError::AccessDenied(_) => 403,
            KmsError::InvalidState(_) | KmsError::DependencyTimeout(_) => 503,
            KmsError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// The message of the same failure answered over STS's query protocol.
    pub fn sts_message(&self) -> String {
        match self {
            KmsError::Auth(SigV4Error::MissingAuthenticationToken) => {
                "Request is missing Authentication Token".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// Shorthand for operation results.
pub type KmsResult<T> = Result<T, KmsError>;

/// Why a request failed SigV4 verification. Variant names follow the AWS error codes.
#[derive(thiserror::Error, Debug)]
pub enum SigV4Error {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The `Authorization` header is present but malformed or incomplete.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The signature does not match, the scope or algorithm is not the one served, or the
    /// request time is outside the allowed skew (AWS: "Signature expired" / "Signature not
    /// yet current").
    #[error("{0}")]
    InvalidSignature(String),
    /// The access key id is unknown.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The request time is missing or unparseable (a time outside the allowed skew is an
    /// [`SigV4Error::InvalidSignature`], as AWS answers it).
    #[error("{0}")]
    RequestExpired(String),
}
