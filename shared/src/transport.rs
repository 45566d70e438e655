//! Transport addresses and streams (vsock, TCP, Unix).
