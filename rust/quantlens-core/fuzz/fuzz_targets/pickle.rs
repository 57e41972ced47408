#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quantlens_fuzz::pickle(data));
