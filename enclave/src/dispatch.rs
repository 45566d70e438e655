//! From `X-Amz-Target` to an operation, and one exhaustive match to run it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{KmsError, KmsResult};
use crate::ops::{self, Ctx};

/// The JSON 1.1 target prefix of AWS KMS.
pub const TARGET_PREFIX: &str = "TrentService.";

macro_rules! operations {
    (implemented: [$($op:ident),* $(,)?], unsupported: [$($un:ident),* $(,)?]) => {
        /// Every AWS KMS operation, by the name `X-Amz-Target` carries.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation {
            $(#[allow(missing_docs)] $op,)*
            $(#[allow(missing_docs)] $un,)*
        }

        impl Operation {
            /// Parses the operation name (the part after `TrentService.`).
            pub fn from_name(name: &str) -> Option<Operation> {
                match name {
                    $(stringify!($op) => Some(Operation::$op),)*
                    $(stringify!($un) => Some(Operation::$un),)*
                    _ => None,
                }
            }

            /// The AWS name of the operation.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$op => stringify!($op),)*
                    $(Operation::$un => stringify!($un),)*
                }
            }

            /// Whether this build serves the operation.
            pub fn is_supported(self) -> bool {
                match self {
                    $(Operation::$op => true,)*
                    $(Operation::$un => false,)*
                }
            }
        }
    };
}

operations! {
    implemented: [
        GetKeyPolicy, ListKeyPolicies, PutKeyPolicy,
        CancelKeyDeletion, CreateAlias, CreateKey, Decrypt, DeleteAlias, DescribeKey, DisableKey,
        EnableKey, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom,
        ListAliases, ListKeys, ListResourceTags, ReEncrypt, ScheduleKeyDeletion, TagResource,
        UntagResource, UpdateAlias, UpdateKeyDescription,
        // HMAC keys and rotation
        DisableKeyRotation, EnableKeyRotation, GenerateMac, GetKeyRotationStatus,
        ListKeyRotations, RotateKeyOnDemand, VerifyMac,
        // Import of key material
        DeleteImportedKeyMaterial, GetParametersForImport, ImportKeyMaterial,
        // Asymmetric keys
        DeriveSharedSecret, GenerateDataKeyPair, GenerateDataKeyPairWithoutPlaintext,
        GetPublicKey, Sign, Verify,
        // Grants
        CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant,
    ],
    unsupported: [
        ConnectCustomKeyStore, CreateCustomKeyStore, DeleteCustomKeyStore,
        DescribeCustomKeyStores, DisconnectCustomKeyStore, ReplicateKey,
        UpdateCustomKeyStore, UpdatePrimaryRegion,
    ]
}

/// Parses an `X-Amz-Target` header value.
///
/// # Errors
/// `UnknownOperationException` when the target is absent or names no KMS operation.
pub fn parse_target(target: Option<&str>) -> KmsResult<Operation> {
    let target = target
        .ok_or_else(|| KmsError::UnknownOperation("Missing X-Amz-Target header.".to_owned()))?;
    target
        .strip_prefix(TARGET_PREFIX)
        .and_then(Operation::from_name)
        .ok_or_else(|| KmsError::UnknownOperation(format!("Unknown operation {target}")))
}

/// Decodes the body, runs the operation, encodes its response.
fn call<Req, Resp>(body: &[u8], run: impl FnOnce(Req) -> KmsResult<Resp>) -> KmsResult<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let request: Req = serde_json::from_slice(body)
        .map_err(|e| KmsError::Serialization(format!("Could not parse the request: {e}")))?;
    let response = run(request)?;
    // Sized for the common answers at once (an Encrypt or Decrypt answer is about as long as
    // its request), rather than grown by doubling from serde_json's 128 bytes.
    let mut out = Vec::with_capacity(body.len() + 512);
    serde_json::to_writer(&mut out, &response)
        .map_err(|_| KmsError::Internal("response encoding"))?;
    Ok(out)
}

/// Runs one authenticated request body against the state; returns the JSON response body.
///
/// # Errors
/// Whatever the operation answers; `UnsupportedOperationException` for operations this build
/// does not serve; `SerializationException` for a body that is not the expected JSON.
pub fn handle(ctx: &Ctx<'_>, op: Operation, body: &[u8]) -> KmsResult<Vec<u8>> {
    handle_split(ctx, op, body, crate::json::Members::parse(body).as_ref())
}

/// [`handle`], with `body` already split into its members (see [`crate::json::Members`]).
///
/// # Errors
/// As [`handle`].
pub fn handle_split(
    ctx: &Ctx<'_>,
    op: Operation,
    body: &[u8],
    members: Option<&crate::json::Members<'_>>,
) -> KmsResult<Vec<u8>> {
    use Operation as O;
    if op.is_supported() {
        crate::authz::authorize(ctx, op.name(), body, members)?;
    }
    match op {
        O::GetKeyPolicy => call(body, |r| ops::get_key_policy::handle(ctx, r)),
        O::ListKeyPolicies => call(body, |r| ops::list_key_policies::handle(ctx, r)),
        O::PutKeyPolicy => call(body, |r| ops::put_key_policy::handle(ctx, r)),
        O::CancelKeyDeletion => call(body, |r| ops::cancel_key_deletion::handle(ctx, r)),
        O::CreateAlias => call(body, |r| ops::create_alias::handle(ctx, r)),
        O::CreateKey => call(body, |r| ops::create_key::handle(ctx, r)),
        O::Decrypt => call(body, |r| ops::decrypt::handle(ctx, r)),
        O::DeleteAlias => call(body, |r| ops::delete_alias::handle(ctx, r)),
        O::DescribeKey => call(body, |r| ops::describe_key::handle(ctx, r)),
        O::DisableKey => call(body, |r| ops::disable_key::handle(ctx, r)),
        O::EnableKey => call(body, |r| ops::enable_key::handle(ctx, r)),
        O::Encrypt => call(body, |r| ops::encrypt::handle(ctx, r)),
        O::GenerateDataKey => call(body, |r| ops::generate_data_key::handle(ctx, r)),
        O::GenerateDataKeyWithoutPlaintext => call(body, |r| {
            ops::generate_data_key_without_plaintext::handle(ctx, r)
        }),
        O::GenerateRandom => call(body, |r| ops::generate_random::handle(ctx, r)),
        O::ListAliases => call(body, |r| ops::list_aliases::handle(ctx, r)),
        O::ListKeys => call(body, |r| ops::list_keys::handle(ctx, r)),
        O::ListResourceTags => call(body, |r| ops::list_resource_tags::handle(ctx, r)),
        O::ReEncrypt => call(body, |r| ops::re_encrypt::handle(ctx, r)),
        O::ScheduleKeyDeletion => call(body, |r| ops::schedule_key_deletion::handle(ctx, r)),
        O::TagResource => call(body, |r| ops::tag_resource::handle(ctx, r)),
        O::UntagResource => call(body, |r| ops::untag_resource::handle(ctx, r)),
        O::UpdateAlias => call(body, |r| ops::update_alias::handle(ctx, r)),
        O::UpdateKeyDescription => call(body, |r| ops::update_key_description::handle(ctx, r)),
        O::DeriveSharedSecret => call(body, |r| ops::derive_shared_secret::handle(ctx, r)),
        O::GenerateDataKeyPair => call(body, |r| ops::generate_data_key_pair::handle(ctx, r)),
        O::GenerateDataKeyPairWithoutPlaintext => call(body, |r| {
            ops::generate_data_key_pair_without_plaintext::handle(ctx, r)
        }),
        O::GetPublicKey => call(body, |r| ops::get_public_key::handle(ctx, r)),
        O::Sign => call(body, |r| ops::sign::handle(ctx, r)),
        O::Verify => call(body, |r| ops::verify::handle(ctx, r)),
        O::DisableKeyRotation => call(body, |r| ops::disable_key_rotation::handle(ctx, r)),
        O::EnableKeyRotation => call(body, |r| ops::enable_key_rotation::handle(ctx, r)),
        O::GenerateMac => call(body, |r| ops::generate_mac::handle(ctx, r)),
        O::GetKeyRotationStatus => call(body, |r| ops::get_key_rotation_status::handle(ctx, r)),
        O::ListKeyRotations => call(body, |r| ops::list_key_rotations::handle(ctx, r)),
        O::RotateKeyOnDemand => call(body, |r| ops::rotate_key_on_demand::handle(ctx, r)),
        O::VerifyMac => call(body, |r| ops::verify_mac::handle(ctx, r)),
        O::DeleteImportedKeyMaterial => {
            call(body, |r| ops::delete_imported_key_material::handle(ctx, r))
        }
        O::GetParametersForImport => call(body, |r| ops::get_parameters_for_import::handle(ctx, r)),
        O::ImportKeyMaterial => call(body, |r| ops::import_key_material::handle(ctx, r)),
        O::CreateGrant => call(body, |r| ops::create_grant::handle(ctx, r)),
        O::ListGrants => call(body, |r| ops::list_grants::handle(ctx, r)),
        O::ListRetirableGrants => call(body, |r| ops::list_retirable_grants::handle(ctx, r)),
        O::RetireGrant => call(body, |r| ops::retire_grant::handle(ctx, r)),
        O::RevokeGrant => call(body, |r| ops::revoke_grant::handle(ctx, r)),
        O::ConnectCustomKeyStore
        | O::CreateCustomKeyStore
        | O::DeleteCustomKeyStore
        | O::DescribeCustomKeyStores
        | O::DisconnectCustomKeyStore
        | O::ReplicateKey
        | O::UpdateCustomKeyStore
        | O::UpdatePrimaryRegion => Err(KmsError::UnsupportedOperation(format!(
            "{} is not supported by this ekms build yet.",
            op.name()
        ))),
    }
}
