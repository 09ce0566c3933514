//! libFuzzer target: every input is one request to a real service router.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = turbolift_fuzz::exercise(data);
});
