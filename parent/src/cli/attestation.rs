//! `ekms attestation verify|mock`.
