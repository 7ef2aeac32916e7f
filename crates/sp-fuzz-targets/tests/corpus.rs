//! Replays every file of `fuzz/corpus/<target>/` through its target's body,
//! on stable, in the ordinary test suite: the seeds must keep passing and
//! every crasher once found (kept there, minimized) must stay fixed.

use std::path::{Path, PathBuf};

use sp_fuzz_targets::{Target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn replay(name: &str) {
    let target: Target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no target {name}"));
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("a corpus file");
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} of {} corpus files panic: {failed:#?}",
        failed.len(),
        files.len()
    );
}

macro_rules! replay {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// The tests above, the library's list and the cargo-fuzz targets
        /// name the same targets: none is fuzzed without being replayed.
        #[test]
        fn every_target_is_replayed_and_fuzzed() {
            let mut tested = vec![$(stringify!($name)),*];
            tested.sort();
            let mut listed: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            listed.sort();
            assert_eq!(tested, listed);
            let mut fuzzed: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
                .expect("fuzz/fuzz_targets")
                .map(|e| e.expect("an entry").path())
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
                .collect();
            fuzzed.sort();
            assert_eq!(fuzzed, listed);
        }
    };
}

replay!(
    announce,
    stream_frames,
    protocol_headers,
    sub_trie,
    socket_tcp,
    ws_upgrade,
    ws_message,
    noise_record,
    noise_handshake,
    integrity,
    key_files,
    spcat_args,
    spcat_decode,
    spcat_declare,
    socket_reliable,
);
