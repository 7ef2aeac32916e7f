//! Key generation, storage and loading. (being written)
