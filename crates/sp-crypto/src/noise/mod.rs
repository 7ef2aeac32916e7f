//! Noise hop-by-hop encryption (a pipe layer). (being written)
