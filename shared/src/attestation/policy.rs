//! What a verified document must also satisfy: allowed PCRs, debug mode, nonce, age.
//! Also the `pcrs.json` format (`{"PCR0": "hex", ...}`, as `nitro-cli build-enclave` prints
//! under "Measurements") and the `N=HEX` command-line form.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::document::MAX_PCRS;
use super::error::{AttestationError, FreshnessError, PcrError, PcrSetError};

/// How far in the future a document's timestamp may be, when `max_age` is set.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A set of expected PCR values, index → value. A document matches a set when every PCR the
/// set names is present in the document with that exact value; PCRs the set does not name
/// are not looked at.
pub type PcrSet = BTreeMap<u8, Vec<u8>>;

/// The checks [`super::verify`] applies after the signature and the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allow-list of PCR sets: the document must match at least one. An empty list accepts
    /// any PCRs (use [`Policy::accept_any_pcrs`] to say so).
    pub allowed_pcrs: Vec<PcrSet>,
    /// Accept documents whose PCR0 is all zero (an enclave started with `--debug-mode`,
    /// whose memory the parent can read).
    pub allow_debug: bool,
    /// The nonce the document must carry, when the verifier sent one.
    pub expected_nonce: Option<Vec<u8>>,
    /// How old the document may be at the verification time.
    pub max_age: Option<Duration>,
}

impl Policy {
    /// Pins the PCRs to one set; no debug mode, no nonce, no age limit.
    #[must_use]
    pub fn pinned(pcrs: PcrSet) -> Self {
        Self {
            allowed_pcrs: vec![pcrs],
            allow_debug: false,
            expected_nonce: None,
            max_age: None,
        }
    }

    /// Accepts any PCRs (but still not debug mode); no nonce, no age limit. For inspecting
    /// documents, not for releasing secrets.
    #[must_use]
    pub fn accept_any_pcrs() -> Self {
        Self {
            allowed_pcrs: Vec::new(),
            allow_debug: false,
            expected_nonce: None,
            max_age: None,
        }
    }

    /// The same policy, accepting debug-mode documents.
    #[must_use]
    pub fn allowing_debug(mut self) -> Self {
        self.allow_debug = true;
        self
    }

    /// The same policy, requiring `nonce`.
    #[must_use]
    pub fn with_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.expected_nonce = Some(nonce);
        self
    }

    /// The same policy, refusing documents older than `max_age`.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Debug mode is told by PCR0 alone: in debug mode PCR0/1/2 are zero while PCR3/4 are
    /// not (AWS Nitro Enclaves User Guide, "Attestation": "In debug mode, the PCRs are made
    /// up entirely of zeros").
    pub(crate) fn check_debug(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> Result<(), AttestationError> {
        // public value
        let debug = pcrs.get(&0).is_none_or(|pcr0| pcr0.iter().all(|b| *b == 0));
        if debug && !self.allow_debug {
            return Err(AttestationError::DebugMode);
        }
        Ok(())
    }

    pub(crate) fn check_pcrs(&self, pcrs: &BTreeMap<u8, Vec<u8>>) -> Result<(), PcrError> {
        if self.allowed_pcrs.is_empty() {
            return Ok(());
        }
        let mut mismatches = Vec::with_capacity(self.allowed_pcrs.len());
        for set in &self.allowed_pcrs {
            // public value
            let first_mismatch = set
                .iter()
                .find(|(index, expected)| pcrs.get(index) != Some(expected))
                .map(|(index, _)| *index);
            match first_mismatch {
                None => return Ok(()),
                Some(index) => mismatches.push(index),
            }
        }
        Err(PcrError::NoMatch { mismatches })
    }

    pub(crate) fn check_nonce(&self, nonce: Option<&[u8]>) -> Result<(), AttestationError> {
        match &self.expected_nonce {
            None => Ok(()),
            // public value
            Some(expected) if nonce == Some(expected.as_slice()) => Ok(()),
            Some(_) => Err(AttestationError::Nonce),
        }
    }

    pub(crate) fn check_freshness(
        &self,
        timestamp_ms: u64,
        now: SystemTime,
    ) -> Result<(), FreshnessError> {
        let Some(max_age) = self.max_age else {
            return Ok(());
        };
        let issued = UNIX_EPOCH + Duration::from_millis(timestamp_ms);
        match now.duration_since(issued) {
            Ok(age) if age > max_age => Err(FreshnessError::Stale {
                age_ms: age.as_millis(),
                max_ms: max_age.as_millis(),
            }),
            Ok(_) => Ok(()),
            Err(ahead) if ahead.duration() > MAX_CLOCK_SKEW => Err(FreshnessError::FromTheFuture {
                ahead_ms: ahead.duration().as_millis(),
            }),
            Err(_) => Ok(()),
        }
    }
}

/// Parses a `pcrs.json` file: `{"PCR0": "hex", "PCR1": "hex", "PCR2": "hex"}`, or the whole
/// `nitro-cli build-enclave` output, `{"Measurements": {"HashAlgorithm": "...", "PCR0": ...}}`.
/// Any `PCRn` (n < 32) may be named; values are 32, 48 or 64 bytes of hex.
///
/// # Errors
/// [`PcrSetError`] if the JSON is not such an object, a key is not `PCRn`, a value is not
/// hex of a PCR length, or no PCR is named.
pub fn pcr_set_from_json(json: &str) -> Result<PcrSet, PcrSetError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(PcrSetError::Json)?;
    let mut object = match value {
        serde_json::Value::Object(object) => object,
        _ => return Err(PcrSetError::NotAnObject),
    };
    if let Some(measurements) = object.remove("Measurements") {
        if !object.is_empty() {
            return Err(PcrSetError::NotAnObject);
        }
        object = match measurements {
            serde_json::Value::Object(object) => object,
            _ => return Err(PcrSetError::NotAnObject),
        };
    }
    let mut set = PcrSet::new();
    for (key, value) in object {
        if key == "HashAlgorithm" {
            continue;
        }
        let index = key
            .strip_prefix("PCR")
            .and_then(|n| parse_index(n).ok())
            .ok_or_else(|| PcrSetError::Key(key.clone()))?;
        let serde_json::Value::String(hex_value) = value else {
            return Err(PcrSetError::Key(key));
        };
        set.insert(index, parse_value(index, &hex_value)?);
    }
    if set.is_empty() {
        return Err(PcrSetError::Empty);
    }
    Ok(set)
}

/// Parses one `N=HEX` command-line PCR (`--pcr 0=ab12...`).
///
/// # Errors
/// [`PcrSetError`] if there is no `=`, N is not 0..32, or HEX is not hex of 32, 48 or 64
/// bytes.
pub fn pcr_from_arg(arg: &str) -> Result<(u8, Vec<u8>), PcrSetError> {
    let (index, value) = arg
        .split_once('=')
        .ok_or_else(|| PcrSetError::Key(arg.to_owned()))?;
    let index = parse_index(index.trim_start_matches("PCR"))?;
    Ok((index, parse_value(index, value)?))
}

/// The `pcrs.json` form of a PCR set, `{"PCR0": "hex", ...}`, in index order.
#[must_use]
pub fn pcr_set_to_json(pcrs: &BTreeMap<u8, Vec<u8>>) -> serde_json::Value {
    serde_json::Value::Object(
        pcrs.iter()
            .map(|(index, value)| {
                (
                    format!("PCR{index}"),
                    serde_json::Value::String(hex::encode(value)),
                )
            })
            .collect(),
    )
}

fn parse_index(n: &str) -> Result<u8, PcrSetError> {
    n.parse::<u8>()
        .ok()
        .filter(|i| usize::from(*i) < MAX_PCRS)
        .ok_or_else(|| PcrSetError::Key(n.to_owned()))
}

fn parse_value(index: u8, hex_value: &str) -> Result<Vec<u8>, PcrSetError> {
    let value =
        hex::decode(hex_value.trim()).map_err(|source| PcrSetError::Hex { index, source })?;
    if !matches!(value.len(), 32 | 48 | 64) {
        return Err(PcrSetError::Length {
            index,
            len: value.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PCR0: &str = "8bb159f202bb95d6d4d98e0e103918246cea734f1d57cd263e4fd56075ed53f6fa8c68854817a32749a241e11874c26b";

    #[test]
    fn parses_flat_and_nitro_cli_shapes() {
        let flat = format!(r#"{{"PCR0": "{PCR0}", "PCR8": "{PCR0}"}}"#);
        let set = pcr_set_from_json(&flat).unwrap();
        assert_eq!(set.keys().copied().collect::<Vec<_>>(), [0, 8]);
        assert_eq!(hex::encode(&set[&0]), PCR0);

        let nitro_cli = format!(
            r#"{{"Measurements": {{"HashAlgorithm": "Sha384 {{ ... }}", "PCR0": "{PCR0}", "PCR1": "{PCR0}", "PCR2": "{PCR0}"}}}}"#
        );
        assert_eq!(pcr_set_from_json(&nitro_cli).unwrap().len(), 3);
        // Round trip through the output form.
        let json = pcr_set_to_json(&set).to_string();
        assert_eq!(pcr_set_from_json(&json).unwrap(), set);
    }

    #[test]
    fn refuses_bad_pcr_files() {
        assert!(matches!(
            pcr_set_from_json("[]"),
            Err(PcrSetError::NotAnObject)
        ));
        assert!(matches!(pcr_set_from_json("{}"), Err(PcrSetError::Empty)));
        assert!(matches!(
            pcr_set_from_json(r#"{"PCR32": "00"}"#),
            Err(PcrSetError::Key(_))
        ));
        assert!(matches!(
            pcr_set_from_json(r#"{"PCR0": "zz"}"#),
            Err(PcrSetError::Hex { index: 0, .. })
        ));
        assert!(matches!(
            pcr_set_from_json(r#"{"PCR1": "0011"}"#),
            Err(PcrSetError::Length { index: 1, len: 2 })
        ));
        assert!(matches!(pcr_set_from_json("{"), Err(PcrSetError::Json(_))));
    }

    #[test]
    fn parses_command_line_pcrs() {
        let (index, value) = pcr_from_arg(&format!("2={PCR0}")).unwrap();
        assert_eq!((index, value.len()), (2, 48));
        assert!(pcr_from_arg(PCR0).is_err());
        assert!(pcr_from_arg(&format!("40={PCR0}")).is_err());
    }

    #[test]
    fn any_matching_set_is_enough() {
        let doc = BTreeMap::from([(0, vec![1; 48]), (1, vec![2; 48])]);
        let mut policy = Policy::pinned(BTreeMap::from([(0, vec![9; 48])]));
        assert!(matches!(
            policy.check_pcrs(&doc),
            Err(PcrError::NoMatch { ref mismatches }) if mismatches == &[0]
        ));
        policy
            .allowed_pcrs
            .push(BTreeMap::from([(0, vec![1; 48]), (1, vec![2; 48])]));
        policy.check_pcrs(&doc).unwrap();
        // A PCR the document lacks never matches.
        let absent = Policy::pinned(BTreeMap::from([(5, vec![0; 48])]));
        assert!(absent.check_pcrs(&doc).is_err());
    }

    #[test]
    fn freshness_window() {
        let policy = Policy::accept_any_pcrs().with_max_age(Duration::from_secs(300));
        let issued_ms = 1_700_000_000_000;
        let at = |secs| UNIX_EPOCH + Duration::from_millis(issued_ms) + Duration::from_secs(secs);
        policy.check_freshness(issued_ms, at(300)).unwrap();
        assert!(matches!(
            policy.check_freshness(issued_ms, at(301)),
            Err(FreshnessError::Stale { .. })
        ));
        let early = UNIX_EPOCH + Duration::from_millis(issued_ms) - Duration::from_secs(61);
        assert!(matches!(
            policy.check_freshness(issued_ms, early),
            Err(FreshnessError::FromTheFuture { .. })
        ));
    }
}
