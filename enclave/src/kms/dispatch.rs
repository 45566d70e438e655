//! From `X-Amz-Target` to an operation, and one exhaustive match to run it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{KmsError, KmsResult};
use crate::kms::ops::{self, Ctx};

/// The JSON 1.1 target prefix of AWS KMS.
pub const TARGET_PREFIX: &str = "TrentService.";

/// How an operation's resources are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On the keys and aliases it resolves: the operation reaches each through the guarded
    /// store ([`crate::kms::authz::Keys`]), which authorizes it with one of the row's actions.
    Resources,
    /// On the account (`*`), by the identity policy alone, before the operation runs: the
    /// row's first action.
    Account,
}

/// What of a successful answer the audit record keeps as `responseElements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResponse {
    /// Nothing (answers may be large, or secret: ciphertexts, plaintexts, data keys).
    Nothing,
    /// The whole answer (key metadata, deletion dates).
    Whole,
}

/// The operation table: one row per operation, from which dispatch, authorization and the
/// audit selection are generated. A row reads
/// `Name => module, [IAM actions], scope, audit response;`.
macro_rules! operations {
    (
        implemented: [$($op:ident => $module:ident, [$($action:ident),+], $scope:ident, $audit:ident;)*],
        unsupported: [$($un:ident),* $(,)?]
    ) => {
        /// Every AWS KMS operation, by the name `X-Amz-Target` carries.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation {
            $(#[allow(missing_docs)] $op,)*
            $(#[allow(missing_docs)] $un,)*
        }

        impl Operation {
            /// Every operation, in table order.
            #[cfg(any(test, fuzzing))]
            pub const ALL: &'static [Operation] = &[$(Operation::$op,)* $(Operation::$un,)*];

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


            /// The IAM actions (`kms:<action>`) the operation may be authorized for; none for
            /// an unsupported one.
            pub fn actions(self) -> &'static [&'static str] {
                match self {
                    $(Operation::$op => &[$(stringify!($action)),+],)*
                    $(Operation::$un => &[],)*
                }
            }

            /// How its resources are authorized.
            pub fn scope(self) -> Scope {
                match self {
                    $(Operation::$op => Scope::$scope,)*
                    $(Operation::$un => Scope::Account,)*
                }
            }

            /// What of its answer the audit record keeps.
            pub fn audit_response(self) -> AuditResponse {
                match self {
                    $(Operation::$op => AuditResponse::$audit,)*
                    $(Operation::$un => AuditResponse::Nothing,)*
                }
            }
        }

        /// The members of the operation's request type, as its derived `Deserialize` names
        /// them (for the table-driven authorization tests).
        #[cfg(test)]
        pub(crate) fn request_members(op: Operation) -> Vec<&'static str> {
            match op {
                $(Operation::$op => field_names::<ops::$module::Request>(),)*
                $(Operation::$un => Vec::new(),)*
            }
        }

        /// Runs one request body of `op` (parse, authorize, execute) and encodes its answer.
        fn run(ctx: &Ctx<'_>, op: Operation, body: &[u8]) -> KmsResult<Vec<u8>> {
            match op {
                $(Operation::$op => call(ctx, op, body, |r| ops::$module::handle(ctx, r)),)*
                $(Operation::$un)|* => Err(KmsError::UnsupportedOperation(format!(
                    "{} is not supported by this ekms build yet.",
                    op.name()
                ))),
            }
        }
    };
}

operations! {
    implemented: [
        // Key policies
        GetKeyPolicy => get_key_policy, [GetKeyPolicy], Resources, Nothing;
        ListKeyPolicies => list_key_policies, [ListKeyPolicies], Resources, Nothing;
        PutKeyPolicy => put_key_policy, [PutKeyPolicy], Resources, Nothing;
        // Keys and aliases
        CancelKeyDeletion => cancel_key_deletion, [CancelKeyDeletion], Resources, Whole;
        CreateAlias => create_alias, [CreateAlias], Resources, Nothing;
        CreateKey => create_key, [CreateKey], Account, Whole;
        DeleteAlias => delete_alias, [DeleteAlias], Resources, Nothing;
        DescribeKey => describe_key, [DescribeKey], Resources, Nothing;
        DisableKey => disable_key, [DisableKey], Resources, Nothing;
        EnableKey => enable_key, [EnableKey], Resources, Nothing;
        ListAliases => list_aliases, [ListAliases], Account, Nothing;
        ListKeys => list_keys, [ListKeys], Account, Nothing;
        ListResourceTags => list_resource_tags, [ListResourceTags], Resources, Nothing;
        ScheduleKeyDeletion => schedule_key_deletion, [ScheduleKeyDeletion], Resources, Whole;
        TagResource => tag_resource, [TagResource], Resources, Nothing;
        UntagResource => untag_resource, [UntagResource], Resources, Nothing;
        UpdateAlias => update_alias, [UpdateAlias], Resources, Nothing;
        UpdateKeyDescription => update_key_description, [UpdateKeyDescription], Resources, Nothing;
        // Symmetric cryptography
        Decrypt => decrypt, [Decrypt], Resources, Nothing;
        Encrypt => encrypt, [Encrypt], Resources, Nothing;
        GenerateDataKey => generate_data_key, [GenerateDataKey], Resources, Nothing;
        GenerateDataKeyWithoutPlaintext => generate_data_key_without_plaintext,
            [GenerateDataKeyWithoutPlaintext], Resources, Nothing;
        GenerateRandom => generate_random, [GenerateRandom], Account, Nothing;
        ReEncrypt => re_encrypt, [ReEncryptFrom, ReEncryptTo], Resources, Nothing;
        // HMAC keys and rotation
        DisableKeyRotation => disable_key_rotation, [DisableKeyRotation], Resources, Nothing;
        EnableKeyRotation => enable_key_rotation, [EnableKeyRotation], Resources, Nothing;
        GenerateMac => generate_mac, [GenerateMac], Resources, Nothing;
        GetKeyRotationStatus => get_key_rotation_status, [GetKeyRotationStatus], Resources, Nothing;
        ListKeyRotations => list_key_rotations, [ListKeyRotations], Resources, Nothing;
        RotateKeyOnDemand => rotate_key_on_demand, [RotateKeyOnDemand], Resources, Nothing;
        VerifyMac => verify_mac, [VerifyMac], Resources, Nothing;
        // Import of key material
        DeleteImportedKeyMaterial => delete_imported_key_material, [DeleteImportedKeyMaterial],
            Resources, Nothing;
        GetParametersForImport => get_parameters_for_import, [GetParametersForImport],
            Resources, Nothing;
        ImportKeyMaterial => import_key_material, [ImportKeyMaterial], Resources, Nothing;
        // Asymmetric keys
        DeriveSharedSecret => derive_shared_secret, [DeriveSharedSecret], Resources, Nothing;
        GenerateDataKeyPair => generate_data_key_pair, [GenerateDataKeyPair], Resources, Nothing;
        GenerateDataKeyPairWithoutPlaintext => generate_data_key_pair_without_plaintext,
            [GenerateDataKeyPairWithoutPlaintext], Resources, Nothing;
        GetPublicKey => get_public_key, [GetPublicKey], Resources, Nothing;
        Sign => sign, [Sign], Resources, Nothing;
        Verify => verify, [Verify], Resources, Nothing;
        // Grants
        CreateGrant => create_grant, [CreateGrant], Resources, Nothing;
        ListGrants => list_grants, [ListGrants], Resources, Nothing;
        ListRetirableGrants => list_retirable_grants, [ListRetirableGrants], Account, Nothing;
        RetireGrant => retire_grant, [RetireGrant], Resources, Nothing;
        RevokeGrant => revoke_grant, [RevokeGrant], Resources, Nothing;
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

/// Parse, authorize, execute: decodes the whole body into the operation's request type (a
/// member it defines with the wrong type is a `SerializationException` before anything else),
/// authorizes an account-scoped operation, runs it, and encodes its response. An operation
/// that succeeds without any authorization having allowed it is an internal error (fail
/// closed).
fn call<Req, Resp>(
    ctx: &Ctx<'_>,
    op: Operation,
    body: &[u8],
    run: impl FnOnce(Req) -> KmsResult<Resp>,
) -> KmsResult<Vec<u8>>
where
    Req: DeserializeOwned,
    Resp: Serialize,
{
    let request: Req = serde_json::from_slice(body)
        .map_err(|e| KmsError::Serialization(format!("Could not parse the request: {e}")))?;
    ctx.begin(op.actions());
    ctx.set_operation(op.name());
    if op.scope() == Scope::Account {
        ctx.authorize_account(op.actions().first().copied().unwrap_or_default())?;
    }
    let response = run(request)?;
    if ctx.allowed() == 0 {
        tracing::error!(
            op = op.name(),
            "an operation succeeded without authorization"
        );
        return Err(KmsError::Internal("operation ran without authorization"));
    }
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
/// does not serve; `SerializationException` for a body that is not the expected JSON;
/// `AccessDeniedException` when the caller may not use what the request names.
pub fn handle(ctx: &Ctx<'_>, op: Operation, body: &[u8]) -> KmsResult<Vec<u8>> {
    run(ctx, op, body)
}

/// The field names a derived `Deserialize` of `T` asks for.
#[cfg(test)]
fn field_names<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
    let names = FieldNames(std::cell::RefCell::new(Vec::new()));
    let _ = T::deserialize(&names);
    names.0.into_inner()
}

/// Hands out the field names a derived `Deserialize` asks for, and nothing else.
#[cfg(test)]
struct FieldNames(std::cell::RefCell<Vec<&'static str>>);

#[cfg(test)]
impl<'de> serde::Deserializer<'de> for &FieldNames {
    type Error = serde::de::value::Error;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "only a struct's field names are read",
        ))
    }
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.borrow_mut().extend_from_slice(fields);
        self.deserialize_any(visitor)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
