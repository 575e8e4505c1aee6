#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::field_ciphertext` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::field_ciphertext(data) {
        panic!("field_ciphertext: {why}");
    }
});
