//! The measurements allowed to join a deployment, besides the running members' own image: PCR
//! sets sealed in the store (the setting `measurements`), changed only with the signatures of M
//! of the deployment's N custodians, because an enclave that may join receives every key.
//!
//! A change names the version it applies to ([`Measurements::version`]), so a set of
//! signatures counts for one change only: replayed later, it names an old version and is
//! refused. Each custodian signs [`ekms_shared::custody::measurements_signed_message`] with its
//! custodian key (ECDSA P-384, SHA-384, DER), the key the deployment record lists for it.

use ekms_shared::attestation::{pcr_set_from_json, pcr_set_to_json, PcrSet};
use p384::ecdsa::signature::Verifier as _;
use serde::Deserialize;

pub use crate::access::measurements::{Measurements, MAX_SETS};

use crate::durability::persist::Deployment;
use crate::error::{KmsError, KmsResult};
use crate::json::Blob;

/// `Ekms.ChangeMeasurements`'s body.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ChangeRequest {
    operation: Option<String>,
    pcrs: Option<serde_json::Value>,
    version: Option<u64>,
    signatures: Option<Vec<Blob>>,
}

/// Applies the change `body` asks for to `current`, if M of the deployment's custodians
/// signed it; the new measurements.
///
/// # Errors
/// `ValidationException` for a malformed request, an unknown operation, a version other than
/// the current one, fewer than M distinct custodians' valid signatures, or a change that changes
/// nothing; `LimitExceededException` past [`MAX_SETS`].
pub fn change(
    current: &Measurements,
    deployment: &Deployment,
    body: &[u8],
) -> KmsResult<(Measurements, &'static str, PcrSet)> {
    let req: ChangeRequest = serde_json::from_slice(body)
        .map_err(|_| KmsError::Serialization("The request body is not valid JSON.".to_owned()))?;
    let operation = match req.operation.as_deref() {
        Some("add") => "add",
        Some("remove") => "remove",
        _ => {
            return Err(KmsError::Validation(
                "Operation must be add or remove.".to_owned(),
            ))
        }
    };
    let pcrs = req
        .pcrs
        .ok_or_else(|| KmsError::Validation("Pcrs is required.".to_owned()))?;
    let set = pcr_set_from_json(&pcrs.to_string())
        .map_err(|e| KmsError::Validation(format!("Pcrs: {e}")))?;
    let version = req
        .version
        .ok_or_else(|| KmsError::Validation("Version is required.".to_owned()))?;
    if version != current.version {
        return Err(KmsError::Validation(format!(
            "The change was signed for version {version}, but the measurements are at version {}: \
             have it signed again for the current version.",
            current.version
        )));
    }
    let signatures = req.signatures.unwrap_or_default();
    if signatures.len() > usize::from(deployment.total) {
        return Err(KmsError::Validation(format!(
            "{} signatures for a deployment of {} custodians.",
            signatures.len(),
            deployment.total
        )));
    }
    let message = ekms_shared::custody::measurements_signed_message(
        &deployment.deployment_id,
        version,
        operation,
        &pcr_set_to_json(&set).to_string(),
    );
    let keys: Vec<p384::ecdsa::VerifyingKey> = deployment
        .custodians
        .iter()
        .filter_map(|der| ekms_shared::envelope::public_key_from_spki_der(der).ok())
        .map(|k| p384::ecdsa::VerifyingKey::from(&k))
        .collect();
    // Each custodian counts once, whichever signature of theirs comes first.
    let mut signed = std::collections::BTreeSet::new();
    for signature in &signatures {
        let Ok(sig) = p384::ecdsa::Signature::from_der(&signature.0) else {
            continue;
        };
        if let Some(index) = keys.iter().position(|k| k.verify(&message, &sig).is_ok()) {
            signed.insert(index);
        }
    }
    if signed.len() < usize::from(deployment.threshold) {
        return Err(KmsError::Validation(format!(
            "Changing the allowed measurements needs the signatures of {} of the deployment's {} \
             custodians; {} valid signature(s) from custodians were given.",
            deployment.threshold,
            deployment.total,
            signed.len()
        )));
    }
    let mut next = current.clone();
    match operation {
        "add" if next.sets.contains(&set) => {
            return Err(KmsError::Validation(
                "These measurements are already allowed.".to_owned(),
            ))
        }
        "add" if next.sets.len() >= MAX_SETS => {
            return Err(KmsError::LimitExceeded(format!(
                "A deployment allows at most {MAX_SETS} sets of measurements."
            )))
        }
        "add" => next.sets.push(set.clone()),
        _ => {
            let before = next.sets.len();
            next.sets.retain(|s| *s != set);
            if next.sets.len() == before {
                return Err(KmsError::Validation(
                    "These measurements are not in the allowed set.".to_owned(),
                ));
            }
        }
    }
    next.version += 1;
    Ok((next, operation, set))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p384::ecdsa::signature::Signer as _;

    fn custodian() -> (p384::ecdsa::SigningKey, serde_bytes::ByteBuf) {
        let secret = p384::SecretKey::random(&mut p384::elliptic_curve::rand_core::OsRng);
        let der = ekms_shared::envelope::public_key_to_spki_der(&secret.public_key()).unwrap();
        (p384::ecdsa::SigningKey::from(&secret), serde_bytes::ByteBuf::from(der))
    }

    fn deployment(custodians: Vec<serde_bytes::ByteBuf>, threshold: u8) -> Deployment {
        Deployment {
            v: 1,
            deployment_id: "dep-1".to_owned(),
            threshold,
            total: u8::try_from(custodians.len()).unwrap(),
            commitment: vec![0; 48],
            custodians,
        }
    }

    fn body(op: &str, pcrs: &PcrSet, version: u64, signers: &[&p384::ecdsa::SigningKey]) -> Vec<u8> {
        let message = ekms_shared::custody::measurements_signed_message(
            "dep-1",
            version,
            op,
            &pcr_set_to_json(pcrs).to_string(),
        );
        let signatures: Vec<String> = signers
            .iter()
            .map(|k| {
                let sig: p384::ecdsa::Signature = k.sign(&message);
                crate::json::b64(sig.to_der().as_bytes())
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "Operation": op,
            "Pcrs": pcr_set_to_json(pcrs),
            "Version": version,
            "Signatures": signatures,
        }))
        .unwrap()
    }

    #[test]
    fn a_change_needs_m_distinct_custodians_for_the_current_version() {
        let (k1, p1) = custodian();
        let (k2, p2) = custodian();
        let (_k3, p3) = custodian();
        let (stranger, _) = custodian();
        let d = deployment(vec![p1, p2, p3], 2);
        let set: PcrSet = [(0u8, vec![0xab; 48])].into_iter().collect();
        let none = Measurements::default();
        let code = |r: KmsResult<(Measurements, &'static str, PcrSet)>| r.unwrap_err().aws_code();

        // One custodian, one custodian twice, or one and a stranger: fewer than M.
        assert_eq!(code(change(&none, &d, &body("add", &set, 0, &[&k1]))), "ValidationException");
        assert_eq!(code(change(&none, &d, &body("add", &set, 0, &[&k1, &k1]))), "ValidationException");
        let e = change(&none, &d, &body("add", &set, 0, &[&k1, &stranger])).unwrap_err();
        assert!(e.to_string().contains("needs the signatures of 2"), "{e}");
        // Signed for another operation or set: not counted.
        let mut swapped: serde_json::Value =
            serde_json::from_slice(&body("add", &set, 0, &[&k1, &k2])).unwrap();
        swapped["Operation"] = "remove".into();
        assert!(change(&none, &d, &serde_json::to_vec(&swapped).unwrap()).is_err());

        // M of them: added, version 1; and that signed request, replayed, is refused.
        let request = body("add", &set, 0, &[&k2, &k1]);
        let (added, op, _) = change(&none, &d, &request).unwrap();
        assert_eq!((op, added.version, added.sets.clone()), ("add", 1, vec![set.clone()]));
        let e = change(&added, &d, &request).unwrap_err();
        assert!(e.to_string().contains("signed for version 0"), "{e}");
        // Removed with a fresh change; sealed and read back.
        let (removed, _, _) = change(&added, &d, &body("remove", &set, 1, &[&k1, &k2])).unwrap();
        assert!(removed.sets.is_empty());
        assert_eq!(removed.version, 2);
        assert_eq!(Measurements::decode(&added.encode().unwrap()).unwrap(), added);
        assert!(Measurements::decode(b"{\"v\":9,\"version\":0,\"sets\":[]}").is_err());
    }
}
