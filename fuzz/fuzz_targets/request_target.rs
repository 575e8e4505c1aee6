#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::request_target` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::request_target(data) {
        panic!("request_target: {why}");
    }
});
