#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::token` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::token(data) {
        panic!("token: {why}");
    }
});
