//! Ed25519 end-to-end integrity (a message layer). (being written)
