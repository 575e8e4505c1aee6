//! Crypto hot paths: field AEAD, DEK unwrap, pseudonyms, blind indexes, and
//! sanitizing a page of customers.
//!
//! Run: `cargo bench --bench crypto -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use custodian::catalog::FieldCatalog;
use custodian::crypto::{
    BlindField, BlindIndexer, DataKey, FieldPlace, Keyring, MasterKey, Pseudonymizer,
};
use custodian::domain::{PurposeId, Treatment};
use custodian::pipeline::sanitize::{
    sanitize_record, RecordInput, SanitizeContext, StoredField, StoredValue,
};

const PLACE: FieldPlace<'static> = FieldPlace {
    resource: "customer",
    field: "email",
    record_id: 42,
};

fn field_aead(c: &mut Criterion) {
    let dek = DataKey::generate().unwrap();
    let cipher = dek.cipher();
    let mut g = c.benchmark_group("field");
    for (label, len) in [("24B", 24usize), ("1KiB", 1024)] {
        let pt = vec![0x61u8; len];
        let ct = cipher.encrypt(PLACE, &pt).unwrap();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("encrypt_{label}"), |b| {
            b.iter(|| cipher.encrypt(black_box(PLACE), black_box(&pt)).unwrap())
        });
        g.bench_function(format!("decrypt_{label}"), |b| {
            b.iter(|| cipher.decrypt(black_box(PLACE), black_box(&ct)).unwrap())
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("dek_cipher_setup", |b| b.iter(|| black_box(&dek).cipher()));
    g.finish();
}

fn keys(c: &mut Criterion) {
    let ring = Keyring::from_master(&MasterKey::from_bytes([1; 32]), 1).unwrap();
    let wrapped = ring.wrap_dek(&ring.generate_dek().unwrap(), 42).unwrap();
    c.bench_function("dek_unwrap", |b| {
        b.iter(|| ring.unwrap_dek(1, black_box(&wrapped.bytes), 42).unwrap())
    });
    c.bench_function("dek_unwrap_and_cipher", |b| {
        b.iter(|| {
            ring.unwrap_dek(1, black_box(&wrapped.bytes), 42)
                .unwrap()
                .cipher()
        })
    });

    let purpose = PurposeId("analytics".into());
    let pz = Pseudonymizer::from_master(&MasterKey::from_bytes([2; 32]), [&purpose]);
    c.bench_function("pseudonym_token", |b| {
        b.iter(|| pz.token(black_box(&purpose), black_box("C-0000042")))
    });
    let bidx = BlindIndexer::from_master(&MasterKey::from_bytes([3; 32]));
    c.bench_function("blind_index_email", |b| {
        b.iter(|| bidx.index(BlindField::Email, black_box(" Jane.Doe@Example.com ")))
    });
}

fn sanitize_page(c: &mut Criterion) {
    let catalog = FieldCatalog::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/fields.toml"
    )))
    .unwrap();
    let ring = Keyring::from_master(&MasterKey::from_bytes([1; 32]), 1).unwrap();
    let purpose = PurposeId("support".into());
    let pz = Pseudonymizer::from_master(&MasterKey::from_bytes([2; 32]), [&purpose]);

    // 100 customers, each with its own DEK and 4 encrypted fields.
    let page: Vec<(i64, String, Vec<u8>, Vec<StoredField>)> = (1..=100i64)
        .map(|id| {
            let dek = ring.generate_dek().unwrap();
            let cipher = dek.cipher();
            let enc = |field: &str, v: &str| {
                let place = FieldPlace {
                    resource: "customer",
                    field,
                    record_id: id,
                };
                StoredValue::Encrypted(cipher.encrypt(place, v.as_bytes()).unwrap())
            };
            let key = format!("C-{id:07}");
            let fields = vec![
                StoredField::new("external_id", StoredValue::Plain(key.clone())),
                StoredField::new("email", enc("email", &format!("customer{id}@example.com"))),
                StoredField::new("phone", enc("phone", "+44 20 7946 0789")),
                StoredField::new("name", enc("name", "Jane Doe")),
                StoredField::new("birth_date", enc("birth_date", "1984-03-12")),
                StoredField::new("city", StoredValue::Plain("London".into())),
            ];
            let wrapped = ring.wrap_dek(&dek, id).unwrap();
            (id, key, wrapped.bytes, fields)
        })
        .collect();
    // Mixed: two decrypted (clear, masked), one masked date, one pseudonym.
    let view = [
        ("external_id", Treatment::Pseudonym),
        ("email", Treatment::Masked),
        ("phone", Treatment::Pseudonym),
        ("name", Treatment::Clear),
        ("birth_date", Treatment::Masked),
        ("city", Treatment::Clear),
    ];
    let ctx = SanitizeContext {
        catalog: &catalog,
        pseudonymizer: &pz,
        purpose: &purpose,
        resource: "customer",
    };
    let mut g = c.benchmark_group("sanitize");
    g.throughput(Throughput::Elements(100));
    g.bench_function("page_100_customers", |b| {
        b.iter_batched(
            || (),
            |()| {
                page.iter()
                    .map(|(id, key, wrapped, fields)| {
                        let record = RecordInput {
                            record_id: *id,
                            customer_key: Some(key),
                            fields,
                        };
                        sanitize_record(&ctx, &view, &record, || ring.unwrap_dek(1, wrapped, *id))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, field_aead, keys, sanitize_page);
criterion_main!(benches);
