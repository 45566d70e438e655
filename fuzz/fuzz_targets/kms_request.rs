//! Request bodies of every KMS operation in the operation table (`dispatch::Operation::ALL`)
//! and of every principal-administration operation, run through `dispatch::handle` /
//! `principal_ops::handle` as an authenticated caller (the allow-all `dev`, or `alice` whose
//! identity policy allows a few actions) against a state holding one key of each kind, an
//! alias for each, and a grant. Up to four requests run in turn on the same state, so one can
//! set up what the next uses (a grant, an alias, a deletion).
//!
//! Bodies are structure-aware: JSON objects whose members are the operation's request type's
//! (read from its `Deserialize`), with values from a dictionary of the state's ids, ARNs,
//! aliases, ciphertexts, signatures, MACs, public keys, grant tokens, a Recipient document,
//! and algorithm and spec names; or raw bytes.
//!
//! Checks: no panic; an answer is JSON; no request is answered `KMSInternalException` (what a
//! caller sends is never the service's fault). RSA_3072/4096 key generation is skipped (a
//! second per input under the sanitizer).
//!
//! `EKMS_FUZZ_DEBUG=1` prints each operation's outcome (`EKMS_FUZZ_DEBUG_BODY=1`: and its
//! body), to see how deep a corpus reaches: `kms_request corpus/kms_request -runs=0`.

#![no_main]

use arbitrary::Unstructured;
use ekms_enclave::kms::authz::Ctx;
use ekms_enclave::kms::dispatch::{self, Operation};
use ekms_enclave::error::KmsError;
use ekms_enclave::kms::principal_ops;
use ekms_fuzz::{alice_caller, dev_caller, env, field_names, world, JsonGen};
use libfuzzer_sys::fuzz_target;

/// The operation table's request types, by operation. The match is exhaustive: an operation
/// added to the table fails this build until it is added here.
macro_rules! members {
    ($($op:ident => $module:ident,)* ; $($un:ident),* $(,)?) => {
        fn members(op: Operation) -> Vec<&'static str> {
            match op {
                $(Operation::$op => field_names::<ekms_enclave::kms::ops::$module::Request>(),)*
                $(Operation::$un => vec!["KeyId", "CustomKeyStoreId"],)*
            }
        }
    };
}

members! {
    GetKeyPolicy => get_key_policy,
    ListKeyPolicies => list_key_policies,
    PutKeyPolicy => put_key_policy,
    CancelKeyDeletion => cancel_key_deletion,
    CreateAlias => create_alias,
    CreateKey => create_key,
    DeleteAlias => delete_alias,
    DescribeKey => describe_key,
    DisableKey => disable_key,
    EnableKey => enable_key,
    ListAliases => list_aliases,
    ListKeys => list_keys,
    ListResourceTags => list_resource_tags,
    ScheduleKeyDeletion => schedule_key_deletion,
    TagResource => tag_resource,
    UntagResource => untag_resource,
    UpdateAlias => update_alias,
    UpdateKeyDescription => update_key_description,
    Decrypt => decrypt,
    Encrypt => encrypt,
    GenerateDataKey => generate_data_key,
    GenerateDataKeyWithoutPlaintext => generate_data_key_without_plaintext,
    GenerateRandom => generate_random,
    ReEncrypt => re_encrypt,
    DisableKeyRotation => disable_key_rotation,
    EnableKeyRotation => enable_key_rotation,
    GenerateMac => generate_mac,
    GetKeyRotationStatus => get_key_rotation_status,
    ListKeyRotations => list_key_rotations,
    RotateKeyOnDemand => rotate_key_on_demand,
    VerifyMac => verify_mac,
    DeleteImportedKeyMaterial => delete_imported_key_material,
    GetParametersForImport => get_parameters_for_import,
    ImportKeyMaterial => import_key_material,
    DeriveSharedSecret => derive_shared_secret,
    GenerateDataKeyPair => generate_data_key_pair,
    GenerateDataKeyPairWithoutPlaintext => generate_data_key_pair_without_plaintext,
    GetPublicKey => get_public_key,
    Sign => sign,
    Verify => verify,
    CreateGrant => create_grant,
    ListGrants => list_grants,
    ListRetirableGrants => list_retirable_grants,
    RetireGrant => retire_grant,
    RevokeGrant => revoke_grant,
    ;
    ConnectCustomKeyStore, CreateCustomKeyStore, DeleteCustomKeyStore,
    DescribeCustomKeyStores, DisconnectCustomKeyStore, ReplicateKey,
    UpdateCustomKeyStore, UpdatePrimaryRegion,
}

const PRINCIPAL_OPS: &[&str] = &[
    "CreatePrincipal",
    "ListPrincipals",
    "DeletePrincipal",
    "CreateAccessKey",
    "DeleteAccessKey",
    "PutPrincipalPolicy",
    "ListRefusedRecords",
];
const PRINCIPAL_MEMBERS: &[&str] = &["UserName", "Policy", "Limit", "Marker", "AccessKeyId"];

/// Key generation that takes seconds under the sanitizer.
fn too_slow(op_name: &str, body: &[u8]) -> bool {
    matches!(
        op_name,
        "CreateKey"
            | "GenerateDataKeyPair"
            | "GenerateDataKeyPairWithoutPlaintext"
            | "GetParametersForImport"
    ) && body
        .windows(8)
        .any(|w| w == b"RSA_3072" || w == b"RSA_4096")
}

enum Op {
    Kms(Operation),
    Principal(principal_ops::Operation),
}

fn name_of(op: &Op) -> &'static str {
    match op {
        Op::Kms(op) => op.name(),
        Op::Principal(op) => op.name(),
    }
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let mut u = Unstructured::new(data);
    let seed: u64 = u.arbitrary().unwrap_or(0);
    let state = world.fresh_state();
    let env = env(seed);
    let (dev, alice) = (dev_caller(), alice_caller());
    let requests = u.int_in_range(1..=4u8).unwrap_or(1);
    for _ in 0..requests {
        let index = u
            .choose_index(Operation::ALL.len() + PRINCIPAL_OPS.len())
            .unwrap_or(0);
        let op = match Operation::ALL.get(index) {
            Some(op) => Op::Kms(*op),
            None => Op::Principal(
                principal_ops::Operation::from_name(PRINCIPAL_OPS[index - Operation::ALL.len()])
                    .expect("a principal operation"),
            ),
        };
        let caller = if !u.ratio(3, 4).unwrap_or(true) {
            &alice
        } else {
            &dev
        };
        let body: Vec<u8> = if !u.ratio(5, 6).unwrap_or(true) {
            u.arbitrary::<&[u8]>().unwrap_or_default().to_vec()
        } else {
            let names = match &op {
                Op::Kms(op) => members(*op),
                Op::Principal(_) => PRINCIPAL_MEMBERS.to_vec(),
            };
            let suits: &[&str] = match name_of(&op) {
                "Sign" | "Verify" | "GetPublicKey" => &["fuzz-sign", "fuzz-rsa"],
                "GenerateMac" | "VerifyMac" => &["fuzz-hmac"],
                "DeriveSharedSecret" => &["fuzz-ecdh"],
                "Encrypt" | "Decrypt" | "ReEncrypt" | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext" | "CreateGrant" | "ListGrants"
                | "RevokeGrant" | "RetireGrant" => &["fuzz-sym", "fuzz-policy", "fuzz-rsa"],
                "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => &["fuzz-sym"],
                "ImportKeyMaterial" | "GetParametersForImport" | "DeleteImportedKeyMaterial" => {
                    &["fuzz-import"]
                }
                _ => &[],
            };
            let mut gen = JsonGen::new(&mut u, world).prefer(world, suits);
            gen.object(&names, 0).to_string().into_bytes()
        };
        let name = name_of(&op);
        if too_slow(name, &body) {
            continue;
        }
        let kept = ekms_enclave::kms::authz::Kept::default();
        let ctx = Ctx::new(&state, &world.config, &env, caller, &kept);
        let result = match op {
            Op::Kms(op) => dispatch::handle(&ctx, op, &body),
            Op::Principal(op) => principal_ops::handle(&ctx, op, &body),
        };
        if std::env::var_os("EKMS_FUZZ_DEBUG").is_some() {
            let outcome = match &result {
                Ok(answer) if answer.windows(22).any(|w| w == b"CiphertextForRecipient") => {
                    "Ok (for a Recipient)".to_owned()
                }
                Ok(_) => "Ok".to_owned(),
                Err(e) => format!("{} {}", e.aws_code(), e.to_string().chars().take(90).collect::<String>()),
            };
            eprintln!("op {name} {outcome}");
            if std::env::var_os("EKMS_FUZZ_DEBUG_BODY").is_some() {
                eprintln!("body {}", String::from_utf8_lossy(&body));
            }
        }
        match result {
            Ok(answer) => {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&answer).is_ok(),
                    "{name}: the answer is not JSON"
                );
            }
            Err(KmsError::Internal(why)) => panic!(
                "{name}: KMSInternalException ({why}) for the body {}",
                String::from_utf8_lossy(&body)
            ),
            Err(_) => {}
        }
    }
});
