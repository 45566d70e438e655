//! KMS operations: one file each, a plain function of (state, environment, caller, request).
//!
//! No I/O happens here; the server shell around [`crate::kms::dispatch`] owns sockets and time.

use std::collections::BTreeMap;

use crate::keys::ciphertext::EncryptionContext;
use crate::error::{KmsError, KmsResult};
use crate::kms::validate;

pub mod cancel_key_deletion;
pub mod create_alias;
pub mod create_grant;
pub mod create_key;
pub mod decrypt;
pub mod delete_alias;
pub mod delete_imported_key_material;
pub mod derive_shared_secret;
pub mod describe_key;
pub mod disable_key;
pub mod disable_key_rotation;
pub mod enable_key;
pub mod enable_key_rotation;
pub mod encrypt;
pub mod generate_data_key;
pub mod generate_data_key_pair;
pub mod generate_data_key_pair_without_plaintext;
pub mod generate_data_key_without_plaintext;
pub mod generate_mac;
pub mod generate_random;
pub mod get_key_policy;
pub mod get_key_rotation_status;
pub mod get_parameters_for_import;
pub mod get_public_key;
pub mod import_key_material;
pub mod list_aliases;
pub mod list_grants;
pub mod list_key_policies;
pub mod list_key_rotations;
pub mod list_keys;
pub mod list_resource_tags;
pub mod list_retirable_grants;
pub mod metadata;
pub mod put_key_policy;
pub mod re_encrypt;
pub mod retire_grant;
pub mod revoke_grant;
pub mod rotate_key_on_demand;
pub mod schedule_key_deletion;
pub mod sign;
pub mod tag_resource;
pub mod untag_resource;
pub mod update_alias;
pub mod update_key_description;
pub mod verify;
pub mod verify_mac;

pub use crate::kms::state::{Caller, State};

pub use crate::kms::authz::Ctx;

/// Largest plaintext Encrypt accepts.
pub const MAX_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob accepted.
pub const MAX_CIPHERTEXT: usize = 6144;
/// Largest canonical encryption context, in bytes.
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// Checks an encryption context and returns it in canonical order.
///
/// # Errors
/// `ValidationException` when its keys and values together exceed [`MAX_CONTEXT_BYTES`].
pub fn encryption_context(
    field: &str,
    context: Option<BTreeMap<String, String>>,
) -> KmsResult<EncryptionContext> {
    let context = context.unwrap_or_default();
    let size: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONTEXT_BYTES {
        return Err(KmsError::invalid_field(field, format_args!("keys and values together must be at most {MAX_CONTEXT_BYTES} bytes")));
    }
    if context.keys().any(String::is_empty) {
        return Err(KmsError::invalid_field(field, "keys must not be empty"));
    }
    Ok(context)
}

/// Checks `GrantTokens`. Grants take effect at once here, so a token only has to be one this
/// service issued ([`create_grant::parse_grant_token`]); it grants nothing by itself.
///
/// # Errors
/// `ValidationException` for more than 10 tokens or a token outside 1–8192 characters;
/// `InvalidGrantTokenException` for a token this service did not issue.
pub fn grant_tokens(tokens: Option<&[String]>) -> KmsResult<()> {
    let tokens = tokens.unwrap_or_default();
    validate::count("grantTokens", tokens, 10)?;
    for token in tokens {
        create_grant::parse_grant_token("grantTokens", token)?;
    }
    Ok(())
}

/// Every encryption algorithm AWS KMS names.
pub const ENCRYPTION_ALGORITHMS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

/// Checks an `EncryptionAlgorithm` field for a symmetric key.
///
/// # Errors
/// `ValidationException` for a name AWS does not know; `InvalidKeyUsageException` for an
/// asymmetric algorithm on a symmetric key.
pub fn symmetric_algorithm(field: &str, value: Option<&str>) -> KmsResult<&'static str> {
    match value {
        None | Some("SYMMETRIC_DEFAULT") => Ok("SYMMETRIC_DEFAULT"),
        Some(other) => {
            validate::one_of(field, other, ENCRYPTION_ALGORITHMS)?;
            Err(KmsError::InvalidKeyUsage(format!(
                "The encryption algorithm {other} is not compatible with the symmetric KMS key."
            )))
        }
    }
}

/// Answers `DryRunOperationException` when a dry run was asked for and all checks passed.
///
/// # Errors
/// [`KmsError::DryRun`] when `dry_run` is true.
pub fn dry_run(dry_run: Option<bool>) -> KmsResult<()> {
    if dry_run == Some(true) {
        Err(KmsError::DryRun)
    } else {
        Ok(())
    }
}

/// Verifies a `Recipient` field, when given, against the deployment's attestation roots at
/// the enclave time. The verified PCRs and image digest ride on the returned [`Recipient`] for
/// the policy engine's `kms:RecipientAttestation:*` conditions.
///
/// # Errors
/// `ValidationException` for a document that does not verify, another algorithm, or a bound
/// key that is not RSA.
///
/// [`Recipient`]: crate::keys::recipient::Recipient
pub fn recipient(
    ctx: &Ctx<'_>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
) -> KmsResult<Option<crate::keys::recipient::Recipient>> {
    recipient
        .map(|r| crate::keys::recipient::verify(r, &ctx.config.recipient_anchors, ctx.env.now()))
        .transpose()
        .map_err(KmsError::from)
}

/// The secret of an answer: in the clear, or as `CiphertextForRecipient` for an attested
/// recipient (never both).
///
/// # Errors
/// `KMSInternalException` if enveloping fails.
pub fn for_recipient(
    ctx: &Ctx<'_>,
    recipient: Option<&crate::keys::recipient::Recipient>,
    secret: zeroize::Zeroizing<Vec<u8>>,
) -> KmsResult<(Option<crate::json::SecretBlob>, Option<crate::json::Blob>)> {
    match recipient {
        None => Ok((Some(crate::json::SecretBlob(secret)), None)),
        Some(r) => Ok((
            None,
            Some(crate::json::Blob(
                r.envelope(&secret, ctx.env.entropy.as_ref())?,
            )),
        )),
    }
}

#[cfg(test)]
pub(crate) mod test_support;
