#![no_main]
// the body lives in sp-fuzz-targets, which the stable test suite replays
// the corpus through (fuzz/README.md)
libfuzzer_sys::fuzz_target!(|data: &[u8]| sp_fuzz_targets::noise_record(data));
