//! GenerateDataKey: a fresh data key, returned in plaintext and encrypted under the KMS key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::encrypt::seal_with;
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::json::{Blob, SecretBlob};
use crate::kms::validate;

/// GenerateDataKey (and GenerateDataKeyWithoutPlaintext) request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<crate::keys::recipient::RecipientInfoRequest>,
    dry_run: Option<bool>,
}

/// GenerateDataKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    ciphertext_blob: Blob,
    /// Absent when the answer goes to a Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<SecretBlob>,
    key_id: String,
    /// The data key as CMS EnvelopedData for an attested Recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext_for_recipient: Option<Blob>,
    /// The material that encrypted the data key; absent for a Recipient (as AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

/// A generated data key: its ciphertext, plaintext and the KMS key ARN.
pub struct DataKey {
    /// The data key under the KMS key.
    pub ciphertext: Vec<u8>,
    /// The data key itself.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The KMS key's ARN.
    pub key_arn: String,
    /// The `KeyMaterialId` of the material that encrypted it.
    pub key_material_id: Option<String>,
    /// The verified Recipient the plaintext must go to instead of the caller.
    pub recipient: Option<crate::keys::recipient::Recipient>,
}

/// Generates a data key as the request asks.
///
/// # Errors
/// `ValidationException` (KeySpec xor NumberOfBytes 1–1024), `NotFoundException`,
/// `DisabledException`, `KMSInvalidStateException`, `DryRunOperationException`.
pub fn generate(ctx: &Ctx<'_>, action: &'static str, req: Request) -> KmsResult<DataKey> {
    let key_id = validate::required("keyId", req.key_id)?;
    let length = match (req.number_of_bytes, req.key_spec.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(KmsError::Validation(
                "Please specify either number of bytes or key spec, but not both.".to_owned(),
            ))
        }
        (None, None) => {
            return Err(KmsError::Validation(
                "Please specify either number of bytes or key spec.".to_owned(),
            ))
        }
        (Some(n), None) => {
            validate::range("numberOfBytes", n, 1, 1024)?;
            usize::try_from(n).map_err(|_| KmsError::Internal("range-checked length"))?
        }
        (None, Some(spec)) => match validate::one_of("keySpec", spec, &["AES_256", "AES_128"])? {
            "AES_128" => 16,
            _ => 32,
        },
    };
    let context = super::encryption_context("encryptionContext", req.encryption_context)?;
    super::grant_tokens(req.grant_tokens.as_deref())?;
    let recipient = super::recipient(ctx, req.recipient)?;
    let store = ctx.keys();
    let conditions = crate::kms::authz::Conditions::context(&context).with_recipient(recipient.as_ref());
    let key = store.key("keyId", &key_id, action, &conditions)?;
    key.check_usable(ctx.config)?;
    super::dry_run(req.dry_run)?;
    let mut plaintext = Zeroizing::new(vec![0u8; length]);
    ctx.env.entropy.fill(&mut plaintext)?;
    let (ciphertext, key_material_id) = seal_with(ctx, key, &context, &plaintext)?;
    Ok(DataKey {
        ciphertext,
        key_material_id,
        plaintext,
        key_arn: ctx.config.key_arn(&key.id),
        recipient,
    })
}

/// Generates a data key.
///
/// # Errors
/// As [`generate`].
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key = generate(ctx, "GenerateDataKey", req)?;
    let (plaintext, ciphertext_for_recipient) =
        super::for_recipient(ctx, key.recipient.as_ref(), key.plaintext)?;
    Ok(Response {
        ciphertext_blob: Blob(key.ciphertext),
        plaintext,
        key_id: ctx.answer_key(key.key_arn),
        key_material_id: key.key_material_id.filter(|_| ciphertext_for_recipient.is_none()),
        ciphertext_for_recipient,
    })
}
