//! ImportKeyMaterial: redeems an import token and installs the unwrapped material in an
//! EXTERNAL key: 256 bits for a symmetric key, the HMAC key for an HMAC key, a PKCS #8 private
//! key for an RSA or ECC key ([`import::material_for`]).
//!
//! Each material has an id (`KeyMaterialId`, [`MaterialId`]) computed from the key id and the
//! material, so material is recognised by its id, also once it was deleted or expired:
//! - `ImportType` EXISTING_KEY_MATERIAL (the default once a key has had material) imports one
//!   of the key's materials again (to change its `ValidTo`, or after DeleteImportedKeyMaterial
//!   or expiry); `KeyMaterialId`, when given, must be that material's id. The key is Enabled
//!   once every material associated with it is held.
//! - NEW_KEY_MATERIAL (the default for a key's first material) gives a key without material its
//!   first, current, material; a symmetric encryption key with material gets new material
//!   PENDING_ROTATION, which RotateKeyOnDemand makes current. Asymmetric and HMAC keys have one
//!   material ever, and refuse `ImportType`, `KeyMaterialId` and `KeyMaterialDescription`.

use serde::{Deserialize, Serialize};

use super::get_parameters_for_import::check_importable;
use super::Ctx;
use crate::env::Millis;
use crate::error::{KmsError, KmsResult};
use crate::json::Blob;
use crate::keys::import::{self, ImportError, MaterialError};
use crate::keys::{Key, KeyMaterial, KeyVersion, MaterialId};
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
    /// The imported material's id (symmetric encryption keys, as AWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_material_id: Option<String>,
}

const NEW: &str = "NEW_KEY_MATERIAL";
const EXISTING: &str = "EXISTING_KEY_MATERIAL";

/// What the request says about the material, beyond the material itself.
struct Options {
    /// `ImportType`, when given.
    new: Option<bool>,
    /// `KeyMaterialId`, when given.
    id: Option<MaterialId>,
    description: Option<String>,
    valid_to: Option<Millis>,
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
/// `ValidationException` (also for `KeyMaterialId` with NEW_KEY_MATERIAL, and for `ImportType`,
/// `KeyMaterialId` or `KeyMaterialDescription` on a key that is not a symmetric encryption key);
/// `NotFoundException`; `UnsupportedOperationException` for a key that is not EXTERNAL;
/// `KMSInvalidStateException` when pending deletion, or when new material is already pending
/// rotation; `InvalidImportTokenException` for an unknown, used or another key's token;
/// `ExpiredImportTokenException` after 24 hours; `InvalidCiphertextException` when the
/// material does not unwrap; `IncorrectKeyMaterialException` for material of the wrong length,
/// material (or a `KeyMaterialId`) that is not one of the key's for EXISTING_KEY_MATERIAL, and
/// the key's own material for NEW_KEY_MATERIAL.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let key_id = validate::required("keyId", req.key_id)?;
    let token = validate::required("importToken", req.import_token)?;
    validate::blob_len("importToken", &token.0, 1, MAX_BLOB)?;
    let encrypted = validate::required("encryptedKeyMaterial", req.encrypted_key_material)?;
    validate::blob_len("encryptedKeyMaterial", &encrypted.0, 1, MAX_BLOB)?;
    let new = req
        .import_type
        .as_deref()
        .map(|t| validate::one_of("importType", t, &[NEW, EXISTING]).map(|t| t == NEW))
        .transpose()?;
    if let Some(description) = &req.key_material_description {
        validate::key_material_description("keyMaterialDescription", description)?;
    }
    let material_id = req
        .key_material_id
        .as_deref()
        .map(|id| validate::key_material_id("keyMaterialId", id))
        .transpose()?;
    if new == Some(true) && material_id.is_some() {
        return Err(KmsError::Validation(
            "KeyMaterialId must not be specified when ImportType is NEW_KEY_MATERIAL".to_owned(),
        ));
    }
    let now = ctx.env.now();
    let valid_to = valid_to(req.expiration_model.as_deref(), req.valid_to, now)?;
    let options = Options {
        new,
        id: material_id,
        description: req.key_material_description,
        valid_to,
    };

    let (id, spec) = {
        let store = ctx.keys();
        let key = store.key(
            "keyId",
            &key_id,
            "ImportKeyMaterial",
            &crate::kms::authz::Conditions::default(),
        )?;
        check_importable(key, ctx)?;
        check_options(key, &options)?;
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
    let key_material_id = install(ctx, &id, material, options, now)?;
    Ok(Response {
        key_id: ctx.config.key_arn(&id),
        key_material_id,
    })
}

/// Asymmetric and HMAC keys have one material ever: AWS refuses `ImportType` (and the members
/// that only go with it) for them.
fn check_options(key: &Key, options: &Options) -> KmsResult<()> {
    if key.shows_material_ids() {
        return Ok(());
    }
    let member = if options.new.is_some() {
        "ImportType"
    } else if options.id.is_some() {
        "KeyMaterialId"
    } else if options.description.is_some() {
        "KeyMaterialDescription"
    } else {
        return Ok(());
    };
    Err(KmsError::Validation(format!(
        "{member} is only valid for symmetric encryption KMS keys"
    )))
}

fn incorrect(ctx: &Ctx<'_>, id: &uuid::Uuid) -> KmsError {
    KmsError::IncorrectKeyMaterial(format!(
        "The key material is not the key material previously imported into {}.",
        ctx.config.key_arn(id)
    ))
}

/// Installs `material` under the write lock, as new material or as one of the key's own;
/// answers its `KeyMaterialId` as AWS shows it.
fn install(
    ctx: &Ctx<'_>,
    id: &uuid::Uuid,
    material: KeyMaterial,
    options: Options,
    now: Millis,
) -> KmsResult<Option<String>> {
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
    check_options(key, &options)?;
    let material_id = MaterialId::of(id, &material);
    // Ids are public values (answered by DescribeKey and ListKeyRotations).
    if options.id.is_some_and(|given| given != material_id) {
        return Err(incorrect(ctx, id));
    }
    let first = key.versions.is_empty() && key.pending.is_none();
    let new = options.new.unwrap_or(first);
    let key = store.get_mut(&proof)?;
    if new {
        add_new(ctx, key, material, material_id, &options, now)?;
    } else {
        let version = key
            .versions
            .iter_mut()
            .chain(key.pending.as_mut())
            .find(|v| v.id == material_id)
            .ok_or_else(|| incorrect(ctx, id))?;
        if version.material.is_none() {
            version.material = Some(material);
        }
        version.valid_to = options.valid_to;
        if let Some(description) = options.description {
            version.description = Some(description);
        }
    }
    key.settle_import_state();
    let answer = key
        .shows_material_ids()
        .then(|| material_id.to_hex());
    store.refresh_expiry(&proof)?;
    store.touch(crate::kms::state::Touched::Key(*id));
    Ok(answer)
}

/// NEW_KEY_MATERIAL: the key's first material, or material pending rotation.
fn add_new(
    ctx: &Ctx<'_>,
    key: &mut Key,
    material: KeyMaterial,
    material_id: MaterialId,
    options: &Options,
    now: Millis,
) -> KmsResult<()> {
    let arn = || ctx.config.key_arn(&key.id);
    if key.versions.iter().any(|v| v.id == material_id) {
        return Err(KmsError::IncorrectKeyMaterial(format!(
            "The key material is already associated with {}: import it with ImportType EXISTING_KEY_MATERIAL.",
            arn()
        )));
    }
    if let Some(pending) = &key.pending {
        return Err(if pending.id == material_id {
            KmsError::IncorrectKeyMaterial(format!(
                "The key material is already pending rotation in {}: import it with ImportType EXISTING_KEY_MATERIAL.",
                arn()
            ))
        } else {
            KmsError::InvalidState(format!(
                "{} already has key material pending rotation: rotate to it (RotateKeyOnDemand) or delete it (DeleteImportedKeyMaterial) first.",
                arn()
            ))
        });
    }
    let mut version = KeyVersion::new(&key.id, material, now, None);
    version.valid_to = options.valid_to;
    version.description.clone_from(&options.description);
    if key.versions.is_empty() {
        key.versions.push(version);
    } else if key.shows_material_ids() {
        key.pending = Some(version);
    } else {
        // Not reached: check_options refuses ImportType for keys with one material ever, and
        // the default for a key with material is EXISTING_KEY_MATERIAL.
        return Err(KmsError::IncorrectKeyMaterial(format!(
            "The key material is not the key material previously imported into {}.",
            arn()
        )));
    }
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
