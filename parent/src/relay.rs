//! The relay: client TCP connections to enclave streams, bytes only.
