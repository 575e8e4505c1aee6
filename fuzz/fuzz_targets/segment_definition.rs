#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::segment_definition` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::segment_definition(data) {
        panic!("segment_definition: {why}");
    }
});
