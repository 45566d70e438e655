//! ImportKeyMaterial: redeems an import token and installs the unwrapped material in an
//! EXTERNAL key, which becomes Enabled: 256 bits for a symmetric key, the HMAC key for an HMAC
//! key, a PKCS #8 private key for an RSA or ECC key ([`import::material_for`]).
//!
//! Only the material first imported into a key may ever be imported into it again (to change
//! `ValidTo`, or after DeleteImportedKeyMaterial or expiry), compared in constant time with
//! the material held or, once it is gone, with the key's commitment to it.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use super::get_parameters_for_import::check_importable;
use super::Ctx;
use crate::env::Millis;
use crate::error::{KmsError, KmsResult};
use crate::keys::import::{self, ImportError, MaterialError};
use crate::json::Blob;
use crate::keys::{KeyMaterial, KeyState, KeyVersion};
use crate::kms::validate;

/// ImportKeyMaterial request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    key_id: Option<String>,
    import_token: Option<Blob>,
    encrypted_key_material: Option<Blob>,
    /// Epoch seconds, as the SDKs send timestamps in JSON 1.1.
    valid_to: Option<f64>,
    expiration_model: Option<String>,
    import_type: Option<String>,
    key_material_description: Option<String>,
    key_material_id: Option<String>,
}

/// ImportKeyMaterial response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_id: String,
}

const EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
const DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";
/// The latest `ValidTo` AWS accepts: 365 days from the request.
const MAX_VALIDITY_MS: Millis = 365 * 24 * 60 * 60 * 1000;
/// Largest `ImportToken` and `EncryptedKeyMaterial` AWS accepts.
const MAX_BLOB: usize = 6144;

/// `ValidTo` from `ExpirationModel` and `ValidTo`, as AWS checks them. `ExpirationModel`
/// defaults to KEY_MATERIAL_EXPIRES, which needs a `ValidTo`: a request with neither is refused.
fn valid_to(model: Option<&str>, valid_to: Option<f64>, now: Millis) -> KmsResult<Option<Millis>> {
    let model = match model {
        Some(m) => validate::one_of("expirationModel", m, &[EXPIRES, DOES_NOT_EXPIRE])?,
        None => EXPIRES,
    };
    match (model, valid_to) {
        (EXPIRES, None) => Err(KmsError::Validation(
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES".to_owned(),
        )),
        (EXPIRES, Some(seconds)) => {
            if !seconds.is_finite() {
                return Err(KmsError::Validation(
                    "validTo is not a valid date".to_owned(),
                ));
            }
            #[allow(clippy::cast_possible_truncation)] // finite, and range-checked just below
            let millis = (seconds * 1000.0).round() as Millis;
            if millis <= now {
                return Err(KmsError::Validation(
                    "The validTo date must be in the future".to_owned(),
                ));
            }
            if millis > now.saturating_add(MAX_VALIDITY_MS) {
                return Err(KmsError::Validation(
                    "The validTo date must be at most 365 days from now".to_owned(),
                ));
            }
            Ok(Some(millis))
        }
        (_, Some(_)) => Err(KmsError::Validation(
            "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"
                .to_owned(),
        )),
        (_, None) => Ok(None),
    }
}

/// Imports the material.
///
/// # Errors
/// `ValidationException`; `NotFoundException`; `UnsupportedOperationException` for a key
/// that is not EXTERNAL; `KMSInvalidStateException` when pending
/// deletion; `InvalidImportTokenException` for an unknown, used or another key's token;
/// `ExpiredImportTokenException` after 24 hours; `InvalidCiphertextException` when the
/// material does not unwrap; `IncorrectKeyMaterialException` for material other than the
/// key's, or of the wrong length.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let token = validate::required("importToken", req.import_token)?;
    validate::blob_len("importToken", &token.0, 1, MAX_BLOB)?;
    let encrypted = validate::required("encryptedKeyMaterial", req.encrypted_key_material)?;
    validate::blob_len("encryptedKeyMaterial", &encrypted.0, 1, MAX_BLOB)?;
    if let Some(import_type) = &req.import_type {
        validate::one_of(
            "importType",
            import_type,
            &["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"],
        )?;
    }
    if let Some(description) = &req.key_material_description {
        validate::str_len("keyMaterialDescription", description, 0, 256)?;
    }
    if req.key_material_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "KeyMaterialId (multiple imported key materials) is not supported.".to_owned(),
        ));
    }
    let now = ctx.env.now();
    let valid_to = valid_to(req.expiration_model.as_deref(), req.valid_to, now)?;

    let (id, spec) = {
        let store = ctx.keys();
        let key = store.key(
            "keyId",
            &key_id,
            "ImportKeyMaterial",
            &crate::kms::authz::Conditions::default(),
        )?;
        check_importable(key, ctx)?;
        (key.id, key.spec)
    };
    // Single use from here: the token is gone whatever happens next.
    let (algorithm, wrapping) = ctx
        .imports()
        .redeem(&token.0, &id, now)
        .map_err(|e| match e {
            ImportError::ExpiredToken => KmsError::ExpiredImportToken(
                "The import token has expired: call GetParametersForImport again.".to_owned(),
            ),
            _ => KmsError::InvalidImportToken(
                "The import token is not valid for this key: it was already used, belongs to another key, or was issued before the service restarted.".to_owned(),
            ),
        })?;
    let material = wrapping
        .unwrap(algorithm, &encrypted.0)
        .map_err(|_unwrap| KmsError::InvalidCiphertext)?;
    drop(wrapping);
    let material = import::material_for(spec, material).map_err(|e| match e {
        MaterialError::NotForSpec { .. } => KmsError::IncorrectKeyMaterial(e.to_string()),
        MaterialError::Encoding => KmsError::Internal("an imported private key did not re-encode"),
    })?;
    install(ctx, &id, material, valid_to, now)?;
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
    })
}

fn incorrect(ctx: &Ctx<'_>, id: &uuid::Uuid) -> KmsError {
    KmsError::IncorrectKeyMaterial(format!(
        "The key material is not the key material previously imported into {}.",
        ctx.config.key_arn(id)
    ))
}

/// Installs (or, for the same material, re-installs) `material` under the write lock.
fn install(
    ctx: &Ctx<'_>,
    id: &uuid::Uuid,
    material: KeyMaterial,
    valid_to: Option<Millis>,
    now: Millis,
) -> KmsResult<()> {
    let mut store = ctx.keys_mut();
    store.ensure_room()?;
    // The key (and its policy) may have changed while the lock was not held: authorize and
    // check it again.
    let proof = store
        .authorize_id(
            *id,
            "ImportKeyMaterial",
            &crate::kms::authz::Conditions::default(),
        )?
        .ok_or_else(|| {
            KmsError::NotFound(format!("Key '{}' does not exist", ctx.config.key_arn(id)))
        })?;
    let key = store.get(&proof)?;
    check_importable(key, ctx)?;
    match key.versions.first() {
        Some(held) => {
            // Lengths are public (fixed by the spec, or a key's public modulus and curve); the
            // bytes are not.
            let held = held.material.expose_secret();
            if !bool::from(held.ct_eq(material.expose_secret())) {
                return Err(incorrect(ctx, id));
            }
        }
        None => {
            if let Some(commitment) = &key.material_commitment {
                if !import::matches_commitment(id, material.expose_secret(), commitment) {
                    return Err(incorrect(ctx, id));
                }
            }
        }
    }
    let key = store.set_valid_to(&proof, valid_to)?;
    if key.versions.is_empty() {
        key.material_commitment = Some(import::material_commitment(
            id,
            material.expose_secret(),
        ));
        key.versions.push(KeyVersion {
            material,
            created: now,
            rotation: None,
        });
    }
    if key.state == KeyState::PendingImport {
        key.state = KeyState::Enabled;
    }
    store.touch(crate::kms::state::Touched::Key(*id));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expiration_model_and_valid_to() {
        let now = 1_700_000_000_000;
        let in_a_day = (now + 86_400_000) as f64 / 1000.0;
        assert_eq!(valid_to(Some(DOES_NOT_EXPIRE), None, now).unwrap(), None);
        assert_eq!(
            valid_to(Some(EXPIRES), Some(in_a_day), now).unwrap(),
            Some(now + 86_400_000)
        );
        assert_eq!(
            valid_to(None, Some(in_a_day), now).unwrap(),
            Some(now + 86_400_000)
        );
        // AWS's default model is KEY_MATERIAL_EXPIRES: neither member is refused, by name.
        let e = valid_to(None, None, now).unwrap_err();
        assert_eq!(e.aws_code(), "ValidationException");
        assert_eq!(
            e.to_string(),
            "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES"
        );
        for (model, to) in [
            (Some(EXPIRES), None),
            (Some(DOES_NOT_EXPIRE), Some(in_a_day)),
            (Some("SOMETIMES"), None),
            (Some(EXPIRES), Some((now - 1000) as f64 / 1000.0)),
            (
                Some(EXPIRES),
                Some((now + 366 * 86_400_000) as f64 / 1000.0),
            ),
            (Some(EXPIRES), Some(f64::NAN)),
        ] {
            let e = valid_to(model, to, now).unwrap_err();
            assert_eq!(e.aws_code(), "ValidationException", "{model:?} {to:?}");
        }
    }
}
