//! The measurements (PCR sets) allowed to join a deployment besides the running members' own
//! image: the data, sealed in the store as the setting `measurements`. Changed only with M of N
//! custodians' signatures (`custody::measurements`).

use ekms_shared::attestation::{pcr_set_from_json, pcr_set_to_json, PcrSet};
use serde::{Deserialize, Serialize};

use crate::error::{KmsError, KmsResult};

/// Most PCR sets a deployment allows (an upgrade needs two or three at once).
pub const MAX_SETS: usize = 16;

/// The allowed measurements: their version (0 before the first change) and the PCR sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measurements {
    /// Changes made so far.
    pub version: u64,
    /// The PCR sets allowed besides the running member's own.
    pub sets: Vec<PcrSet>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    v: u8,
    version: u64,
    sets: Vec<String>,
}

impl Measurements {
    /// The bytes sealed in the store.
    ///
    /// # Errors
    /// `KMSInternalException` if encoding fails.
    pub fn encode(&self) -> KmsResult<Vec<u8>> {
        serde_json::to_vec(&Sealed {
            v: 1,
            version: self.version,
            sets: self.sets.iter().map(|s| pcr_set_to_json(s).to_string()).collect(),
        })
        .map_err(|_| KmsError::Internal("measurements encoding"))
    }

    /// The measurements from their sealed bytes.
    ///
    /// # Errors
    /// Why the bytes are not measurements.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let sealed: Sealed = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if sealed.v != 1 || sealed.sets.len() > MAX_SETS {
            return Err("malformed measurements".to_owned());
        }
        let sets = sealed
            .sets
            .iter()
            .map(|s| pcr_set_from_json(s).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(Measurements {
            version: sealed.version,
            sets,
        })
    }

    /// The answer to `Ekms.ListMeasurements`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "Version": self.version,
            "Measurements": self.sets.iter().map(pcr_set_to_json).collect::<Vec<_>>(),
        })
    }
}

