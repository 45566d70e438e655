//! CreateKey: a new symmetric key whose material is generated inside the enclave.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::metadata::KeyMetadata;
use super::tag_resource::validate_tags;
use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::keys::{Key, KeyMaterial, KeySpec, KeyUsage, Origin, Tag};
use crate::kms::validate;

/// CreateKey request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Request {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<Tag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

/// CreateKey response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    key_metadata: KeyMetadata,
}

const KEY_USAGES: &[&str] = &[
    "SIGN_VERIFY",
    "ENCRYPT_DECRYPT",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
];
const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
];
const ORIGINS: &[&str] = &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

fn unsupported(what: &str) -> KmsError {
    KmsError::UnsupportedOperation(format!("{what} is not supported yet."))
}

/// Creates the key.
///
/// # Errors
/// `ValidationException` for bad fields, `UnsupportedOperationException` for key types and
/// options this service does not offer yet, `TagException`, `LimitExceededException`.
pub fn handle(ctx: &Ctx<'_>, req: Request) -> KmsResult<Response> {
    let description = req.description.unwrap_or_default();
    validate::str_len("description", &description, 0, 8192)?;
    let usage = match &req.key_usage {
        Some(usage) => KeyUsage::parse(validate::one_of("keyUsage", usage, KEY_USAGES)?),
        None => None,
    };
    if let (Some(a), Some(b)) = (&req.key_spec, &req.customer_master_key_spec) {
        if a != b {
            return Err(KmsError::Validation(
                "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec parameter is deprecated. Use KeySpec instead.".to_owned(),
            ));
        }
    }
    for (field, spec) in [
        ("keySpec", &req.key_spec),
        ("customerMasterKeySpec", &req.customer_master_key_spec),
    ] {
        if let Some(spec) = spec {
            let parsed = KeySpec::parse(validate::one_of(field, spec, KEY_SPECS)?);
            if !parsed.is_some_and(|s| {
                s == KeySpec::SymmetricDefault || s.is_hmac() || s.is_rsa() || s.is_ecc()
            }) {
                return Err(unsupported(&format!("KeySpec {spec}")));
            }
        }
    }
    let spec = (req.key_spec.as_deref())
        .or(req.customer_master_key_spec.as_deref())
        .and_then(KeySpec::parse)
        .unwrap_or(KeySpec::SymmetricDefault);
    let usage = match (spec, usage) {
        (KeySpec::SymmetricDefault, None | Some(KeyUsage::EncryptDecrypt)) => {
            KeyUsage::EncryptDecrypt
        }
        (s, Some(KeyUsage::GenerateVerifyMac)) if s.is_hmac() => KeyUsage::GenerateVerifyMac,
        (s, Some(u)) if crate::keys::asym::usage_fits(s, u) => u,
        (_, None) => {
            return Err(KmsError::Validation(
                "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.".to_owned(),
            ))
        }
        (s, Some(u)) => {
            return Err(KmsError::Validation(format!(
                "KeyUsage {} is not compatible with KeySpec {}.",
                u.as_str(),
                s.as_str()
            )))
        }
    };
    let origin = match &req.origin {
        None => Origin::AwsKms,
        Some(origin) => match validate::one_of("origin", origin, ORIGINS)? {
            "AWS_KMS" => Origin::AwsKms,
            // Imported key material (GetParametersForImport): symmetric encryption, HMAC, RSA
            // and ECC keys (every spec this service has; SM2 is refused above).
            "EXTERNAL" => Origin::External,
            _ => {
                return Err(unsupported(&format!(
                    "Origin {origin} with KeySpec {}",
                    spec.as_str()
                )))
            }
        },
    };
    if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
        return Err(unsupported("Custom key stores"));
    }
    if req.multi_region == Some(true) {
        return Err(unsupported("Multi-Region keys"));
    }
    if let Some(policy) = &req.policy {
        validate::str_len("policy", policy, 1, 32768)?;
    }
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;

    // An EXTERNAL key starts without material, PendingImport.
    let material = if origin == Origin::External {
        None
    } else if spec.is_hmac() {
        Some(crate::keys::mac::generate_key(
            spec,
            ctx.env.entropy.as_ref(),
        )?)
    } else if spec.is_rsa() || spec.is_ecc() {
        Some(crate::keys::asym::generate(spec)?)
    } else {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ctx.env.entropy.fill(&mut bytes[..])?;
        Some(KeyMaterial::symmetric(&bytes))
    };
    let mut id = [0u8; 16];
    ctx.env.entropy.fill(&mut id)?;
    let id = uuid::Builder::from_random_bytes(id).into_uuid();
    if let Some(policy) = &req.policy {
        super::put_key_policy::check_policy(
            ctx,
            policy,
            &ctx.config.key_arn(&id),
            req.bypass_policy_lockout_safety_check == Some(true),
        )?;
    }
    let mut key = Key::new(
        id,
        ctx.env.now(),
        spec,
        usage,
        origin,
        material,
    );
    key.description = description;
    key.tags = tags;
    key.policy = req.policy;
    let key_metadata = KeyMetadata::of(&key, ctx.config);
    let mut keys = ctx.keys_mut();
    keys.insert(key)?;
    keys.touch(crate::kms::state::Touched::Key(id));
    Ok(Response { key_metadata })
}
