#![no_main]
//! cargo-fuzz driver of `custodian::fuzzing::import_rows` (its property is documented there).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = custodian::fuzzing::import_rows(data) {
        panic!("import_rows: {why}");
    }
});
