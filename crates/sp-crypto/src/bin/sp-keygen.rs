//! `sp-keygen [--dir DIR] [--kind signing|noise|both] [--force] NAME`:
//! generates the keys of the spstack crypto layers (see
//! `sp_crypto::keygen_cli` for the files and formats; `spcat keygen` is the
//! same command). Exit status: 0 on success, 1 if a key could not be
//! written, 2 on a usage error.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(sp_crypto::keygen_cli::run(
        "sp-keygen",
        std::env::args().skip(1),
    ))
}
