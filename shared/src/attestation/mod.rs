//! Nitro attestation documents: verification and the insecure mock attester.
