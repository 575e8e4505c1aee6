#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::audit_export` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::audit_export(data) {
        panic!("audit_export: {why}");
    }
});
