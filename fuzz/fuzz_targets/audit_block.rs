#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::audit_block` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::audit_block(data) {
        panic!("audit_block: {why}");
    }
});
