//! `ekms dev`: mock enclave + parent relay on loopback.
