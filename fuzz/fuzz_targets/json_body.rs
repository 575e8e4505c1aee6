#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::json_body` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::json_body(data) {
        panic!("json_body: {why}");
    }
});
