//! The audit trail against a real store: tamper detection (each kind named
//! with its seq), fail-closed writes with readiness, group commit, export
//! with offline verification, queries, and retention pruning.

use custodian::audit::{
    self, store, Action, AuditEvent, AuditFilter, AuditUnavailable, AuditWriter, ExportFormat,
    ProblemKind, PublicKey, Reason, Signer, StoredEvent, VerifyReport, WriterOptions,
};
use custodian::domain::Treatment;
use futures::StreamExt;
use std::time::Duration;

use crate::both_backends;
use crate::helpers::*;

const CHAIN: &str = "t";

fn event(i: i64) -> AuditEvent {
    AuditEvent::system("svc", Action::CustomerRead, format!("/v1/customers/{i}"))
        .request_id(format!("req-{i}"))
        .customer(i)
        .field("email", Treatment::Masked)
        .field("city", Treatment::Clear)
        .records(1)
        .allow(
            Reason::Policy("p, analyst, customer, read_masked".into()),
            200,
        )
        .build()
}

/// A writer on chain `t` checkpointing every 10 events.
async fn writer(app: &TestApp) -> (AuditWriter, PublicKey) {
    let signer = Signer::ephemeral().unwrap();
    let key = *signer.public_key();
    let options = WriterOptions {
        instance: CHAIN.to_owned(),
        checkpoint_every_events: 10,
        checkpoint_interval: Duration::from_secs(3600),
        queue_capacity: 1000,
        max_batch: 512,
        write_timeout: Duration::from_secs(2),
    };
    let w = AuditWriter::start(
        app.state.db.clone(),
        app.state.clock.clone(),
        signer,
        options,
    )
    .await
    .unwrap();
    (w, key)
}

/// 25 events one by one (checkpoints at 10, 20, and 25 at shutdown).
async fn chain_of_25(app: &TestApp) -> PublicKey {
    let (w, key) = writer(app).await;
    for i in 1..=25 {
        let receipt = w.record(event(i)).await.unwrap();
        assert_eq!(receipt.seq, i);
    }
    w.shutdown().await;
    key
}

async fn verify(app: &TestApp, key: PublicKey) -> VerifyReport {
    let keys = [key, *app.state.audit.public_key()];
    audit::verify_store(&app.state.db, &keys, &|_| {})
        .await
        .unwrap()
}

async fn exec(app: &TestApp, sql: &str) {
    sqlx::query(sql).execute(&app.state.db.pool).await.unwrap();
}

fn assert_problem(report: &VerifyReport, kind: ProblemKind, seq: i64) {
    let p = report
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("intact? {report}"));
    assert_eq!(
        (p.kind, p.seq, p.instance.as_str()),
        (kind, seq, CHAIN),
        "{report}"
    );
}

async fn rows(app: &TestApp, after: i64, n: i64) -> Vec<StoredEvent> {
    store::events_after(&app.state.db, CHAIN, after, n)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r {
            store::ReadRow::Ok(e) => e,
            store::ReadRow::Bad { why, .. } => panic!("{why}"),
        })
        .collect()
}

both_backends!(intact_chain_verifies_with_counts, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    let report = verify(&app, key).await;
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.events, report.checkpoints), (25, 3), "{report}");
    assert_eq!(
        report.to_string(),
        "intact: 25 events, 3 checkpoints, 1 chains"
    );
    // A new writer continues the chain from the stored head.
    let (w, key2) = writer(&app).await;
    assert_eq!(w.record(event(26)).await.unwrap().seq, 26);
    w.shutdown().await;
    let keys = [key, key2, *app.state.audit.public_key()];
    let report = audit::verify_store(&app.state.db, &keys, &|_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!((report.events, report.checkpoints), (26, 4));
    // The checkpoint the second key signed is refused without that key.
    assert_problem(&verify(&app, key).await, ProblemKind::BadSignature, 26);
});

async fn edit_block(app: &TestApp, seq: i64, edit: impl FnOnce(&mut Vec<StoredEvent>)) {
    app.edit_audit_block(CHAIN, seq, edit).await;
}

async fn set_block_bytes(app: &TestApp, first_seq: i64, bytes: Vec<u8>) {
    app.set_audit_block_bytes(CHAIN, first_seq, bytes).await;
}

/// Replaces chain `t` with `edit` applied to its events (re-stored as
/// blocks, one per run of equal times).
async fn rewrite_chain(app: &TestApp, edit: impl FnOnce(&mut Vec<StoredEvent>)) {
    let mut all = rows(app, 0, 1000).await;
    edit(&mut all);
    exec(
        app,
        "DELETE FROM audit_event_customers WHERE instance = 't'",
    )
    .await;
    exec(app, "DELETE FROM audit_index_progress WHERE instance = 't'").await;
    exec(app, "DELETE FROM audit_blocks WHERE instance = 't'").await;
    store::insert_batch(&app.state.db.pool, &all).await.unwrap();
}

/// Events 1..=n (event `i` touches customer `i`) chained by hand into ONE
/// block of chain `t` and stored directly, as a busy writer stores a batch
/// (but no writer has indexed it).
async fn store_one_block(app: &TestApp, n: i64) -> store::Block {
    let at = app.state.clock.now_micros();
    let block = store::Block::chain(
        CHAIN,
        (0, audit::GENESIS),
        (1..=n).map(|seq| {
            let mut e = event(seq);
            e.occurred_at = at;
            e
        }),
    );
    store::insert_batch(&app.state.db.pool, &block.rows)
        .await
        .unwrap();
    block
}

/// How far chain `t` is in the customer index (migration 0005).
async fn indexed_through(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT indexed_through FROM audit_index_progress WHERE instance = 't'")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn seqs_of_customer(app: &TestApp, customer: i64) -> Vec<i64> {
    let filter = AuditFilter {
        customer: Some(customer),
        instance: Some(CHAIN.to_owned()),
        ..AuditFilter::default()
    };
    let page = audit::query(&app.state.db, &filter, None, 10)
        .await
        .unwrap();
    page.events.iter().map(|e| e.seq).collect()
}

both_backends!(
    customer_filter_reads_what_the_index_has_not_reached,
    async |app: TestApp| {
        store_one_block(&app, 6).await;
        // Not in the index yet: found by reading the block itself.
        assert_eq!(seqs_of_customer(&app, 4).await, vec![4]);
        assert_eq!(seqs_of_customer(&app, 9).await, Vec::<i64>::new());
        // The chain's writer indexes it (normally within INDEX_EVERY).
        let (w, _) = writer(&app).await;
        assert!(w.index_now().await);
        let linked: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT customer_id, seq FROM audit_event_customers WHERE instance = 't' \
             ORDER BY seq",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(linked, (1..=6).map(|i| (i, i)).collect::<Vec<_>>());
        assert_eq!(seqs_of_customer(&app, 4).await, vec![4]);
        // Indexed blocks are found through the index only (so it is the
        // index that answers; it is derived data, see SECURITY.md).
        exec(
            &app,
            "DELETE FROM audit_event_customers WHERE customer_id = 4",
        )
        .await;
        assert_eq!(seqs_of_customer(&app, 4).await, Vec::<i64>::new());
        // A new event is found at once, indexed or not.
        assert_eq!(w.record(event(4)).await.unwrap().seq, 7);
        assert_eq!(seqs_of_customer(&app, 4).await, vec![7]);
        w.shutdown().await;
        // Shutdown indexes what is left.
        assert_eq!(seqs_of_customer(&app, 4).await, vec![7]);
        assert_eq!(indexed_through(&app).await, 7);
    }
);

both_backends!(edited_event_is_named_modified, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    edit_block(&app, 5, |events| {
        let e = events.iter_mut().find(|e| e.seq == 5).unwrap();
        e.event.actor = "x".into();
    })
    .await;
    assert_problem(&verify(&app, key).await, ProblemKind::Modified, 5);
});

/// 25 events chained by hand into ONE block, as a busy writer stores a batch.
async fn one_block_of_25(app: &TestApp) -> (PublicKey, Vec<u8>) {
    let signer = Signer::ephemeral().unwrap();
    let block = store_one_block(app, 25).await;
    let at = block.rows[0].event.occurred_at;
    let (_, prev) = block.head().unwrap();
    let cp = signer.sign(CHAIN, 25, prev, at);
    store::insert_checkpoint(&app.state.db, &cp).await.unwrap();
    let blocks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_blocks")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(blocks, 1);
    (*signer.public_key(), block.bytes().to_vec())
}

both_backends!(
    damaged_bytes_inside_a_block_are_named,
    async |app: TestApp| {
        let (key, bytes) = one_block_of_25(&app).await;
        assert!(verify(&app, key).await.is_intact());
        // The 13th event starts after 12 entries; find it by its request id.
        let at = bytes.windows(6).position(|w| w == b"req-13").unwrap();
        let mut flipped = bytes.clone();
        flipped[at + 5] = b'4'; // req-13 -> req-14: still decodes, hash differs
        set_block_bytes(&app, 1, flipped).await;
        assert_problem(&verify(&app, key).await, ProblemKind::Modified, 13);
        // A broken length: the rest of the block cannot be read.
        let start = bytes.windows(6).position(|w| w == b"req-13").unwrap();
        let entry = (0..start)
            .rev()
            .find(|&i| {
                bytes.get(i..i + 5) == Some(&[audit::event::ENCODING_VERSION, 0, 0, 0, 1][..])
            })
            .unwrap(); // version byte then the instance length (1)
        let mut broken = bytes.clone();
        broken[entry - 4] = 0xff; // high byte of this entry's length
        set_block_bytes(&app, 1, broken).await;
        assert_problem(&verify(&app, key).await, ProblemKind::Modified, 13);
    }
);

both_backends!(
    block_columns_are_held_to_their_events,
    async |app: TestApp| {
        let key = chain_of_25(&app).await;
        // Each column alone: the block is reported where it starts.
        for sql in [
            "UPDATE audit_blocks SET at = 0 WHERE instance = 't' AND first_seq = 7",
            "UPDATE audit_blocks SET last_seq = 999 WHERE instance = 't' AND first_seq = 7",
            "UPDATE audit_blocks SET customers = '[]' WHERE instance = 't' AND first_seq = 7",
        ] {
            let before: (i64, i64, String) = sqlx::query_as(
            "SELECT at, last_seq, customers FROM audit_blocks WHERE instance = 't' AND first_seq = 7",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
            exec(&app, sql).await;
            assert_problem(&verify(&app, key).await, ProblemKind::Modified, 7);
            sqlx::query(
                "UPDATE audit_blocks SET at = $1, last_seq = $2, customers = $3 \
             WHERE instance = 't' AND first_seq = 7",
            )
            .bind(before.0)
            .bind(before.1)
            .bind(before.2)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
            assert!(verify(&app, key).await.is_intact(), "{sql}");
        }
    }
);

both_backends!(
    prune_refuses_a_block_whose_time_was_edited,
    async |app: TestApp| {
        let signer = Signer::ephemeral().unwrap();
        let (w, _) = writer(&app).await;
        for i in 1..=5 {
            w.record(event(i)).await.unwrap();
        }
        w.shutdown().await;
        // Make a recent block look old: prune must not sign it away.
        exec(
            &app,
            "UPDATE audit_blocks SET at = 0 WHERE instance = 't' AND first_seq = 3",
        )
        .await;
        let now = app.state.clock.now_micros();
        assert!(audit::prune(&app.state.db, &signer, 1, now).await.is_err());
        assert_eq!(rows(&app, 0, 100).await.len(), 5);
    }
);

both_backends!(deleted_event_is_named, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    // Events recorded one by one: one block each.
    exec(
        &app,
        "DELETE FROM audit_blocks WHERE instance = 't' AND first_seq = 5",
    )
    .await;
    assert_problem(&verify(&app, key).await, ProblemKind::Deleted, 5);
});

both_backends!(
    event_deleted_from_inside_a_block_is_named,
    async |app: TestApp| {
        let (key, _) = one_block_of_25(&app).await;
        edit_block(&app, 13, |events| {
            events.retain(|e| e.seq != 13);
        })
        .await;
        assert_problem(&verify(&app, key).await, ProblemKind::Deleted, 13);
    }
);

both_backends!(forged_insert_is_named, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    // A forger who knows the format: correct prev_hash, consistent hash,
    // and the events after it renumbered to make room.
    rewrite_chain(&app, |all| {
        let four = all[3].clone();
        let mut forged_event = AuditEvent::system("intruder", Action::CustomerRead, "/x").build();
        forged_event.occurred_at = four.event.occurred_at;
        let hash = forged_event.chain_hash(CHAIN, 5, &four.hash);
        for e in all.iter_mut().skip(4) {
            e.seq += 1;
        }
        all.insert(
            4,
            StoredEvent {
                instance: CHAIN.into(),
                seq: 5,
                event: forged_event,
                prev_hash: four.hash,
                hash,
            },
        );
    })
    .await;
    assert_problem(&verify(&app, key).await, ProblemKind::Inserted, 5);
});

both_backends!(reordered_events_are_named, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    rewrite_chain(&app, |all| {
        all.swap(4, 5);
        all[4].seq = 5;
        all[5].seq = 6;
    })
    .await;
    assert_problem(&verify(&app, key).await, ProblemKind::Reordered, 5);
});

both_backends!(
    truncation_below_a_checkpoint_is_named,
    async |app: TestApp| {
        let key = chain_of_25(&app).await;
        exec(
            &app,
            "DELETE FROM audit_blocks WHERE instance = 't' AND first_seq > 22",
        )
        .await;
        let report = verify(&app, key).await;
        assert_problem(&report, ProblemKind::Truncated, 23);
        assert!(report.to_string().contains("seq 25"), "{report}");
    }
);

both_backends!(bad_checkpoint_signature_is_named, async |app: TestApp| {
    let key = chain_of_25(&app).await;
    exec(
        &app,
        "UPDATE audit_checkpoints SET signed_at = signed_at + 1 WHERE instance = 't' AND seq = 10",
    )
    .await;
    assert_problem(&verify(&app, key).await, ProblemKind::BadSignature, 10);
    // And a checkpoint signed by a key the auditor does not hold.
    let other = *Signer::ephemeral().unwrap().public_key();
    let report = audit::verify_store(&app.state.db, &[other], &|_| {})
        .await
        .unwrap();
    assert_eq!(report.problem.unwrap().kind, ProblemKind::BadSignature);
});

both_backends!(
    rewritten_chain_is_caught_at_the_checkpoint,
    async |app: TestApp| {
        let key = chain_of_25(&app).await;
        // Re-hash seq 5..=25 after editing seq 5: links and hashes all agree.
        rewrite_chain(&app, |all| {
            all[4].event.actor = "x".into();
            let mut prev = all[3].hash;
            for r in all.iter_mut().skip(4) {
                r.prev_hash = prev;
                r.hash = r.event.chain_hash(CHAIN, r.seq, &prev);
                prev = r.hash;
            }
        })
        .await;
        assert_problem(
            &verify(&app, key).await,
            ProblemKind::CheckpointMismatch,
            10,
        );
    }
);

both_backends!(
    refused_writes_fail_closed_and_recover,
    async |app: TestApp| {
        let audit = &app.state.audit;
        assert_eq!(audit.record(event(1)).await.unwrap().seq, 1);
        app.refuse_audit_inserts().await;
        assert_eq!(
            audit.record(event(2)).await,
            Err(AuditUnavailable::WriteFailed)
        );
        assert!(!audit.is_healthy());
        let r = app.get("/readyz").await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["reason"], "audit trail cannot record");
        app.allow_audit_inserts().await;
        // The failed event took no seq; the chain continues without a gap.
        assert_eq!(audit.record(event(3)).await.unwrap().seq, 2);
        assert!(audit.is_healthy());
        assert_eq!(app.get("/readyz").await.status(), 200);
        let report = audit::verify_store(&app.state.db, &[*audit.public_key()], &|_| {})
            .await
            .unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!(report.events, 2);
        app.stop().await;
    }
);

both_backends!(concurrent_records_share_commits, async |app: TestApp| {
    let tasks: Vec<_> = (1..=200)
        .map(|i| {
            let audit = app.state.audit.clone();
            tokio::spawn(async move { audit.record(event(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let batches = app.state.audit.batches();
    assert!(batches < 200, "{batches} transactions for 200 events");
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("custodian_audit_batches_total"), "{text}");
    let report = audit::verify_store(&app.state.db, &[*app.state.audit.public_key()], &|_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report}");
});

async fn export(app: &TestApp, filter: AuditFilter, format: ExportFormat) -> String {
    let mut stream = Box::pin(audit::export_stream(
        app.state.db.clone(),
        filter,
        format,
        app.state.audit.signer(),
        0,
    ));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

both_backends!(
    exported_ndjson_verifies_offline_and_edits_are_named,
    async |app: TestApp| {
        let key = chain_of_25(&app).await;
        let text = export(&app, AuditFilter::default(), ExportFormat::Ndjson).await;
        let report = audit::verify_ndjson(
            text.as_bytes(),
            &[key, *app.state.audit.public_key()],
            &|_| {},
        )
        .unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!((report.events, report.checkpoints), (25, 3));
        // Editing one line breaks it, naming the seq.
        let edited: String = text
            .lines()
            .map(|l| {
                if l.contains("\"seq\":7,") && l.contains("\"type\":\"event\"") {
                    l.replace("\"actor\":\"svc\"", "\"actor\":\"someone-else\"")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(edited.trim(), text.trim());
        let report = audit::verify_ndjson(
            edited.as_bytes(),
            &[key, *app.state.audit.public_key()],
            &|_| {},
        )
        .unwrap();
        let p = report.problem.unwrap();
        assert_eq!((p.kind, p.seq), (ProblemKind::Modified, 7));
        // A filtered export verifies what it holds.
        let one = AuditFilter {
            customer: Some(7),
            ..AuditFilter::default()
        };
        let text = export(&app, one, ExportFormat::Ndjson).await;
        let report = audit::verify_ndjson(
            text.as_bytes(),
            &[key, *app.state.audit.public_key()],
            &|_| {},
        )
        .unwrap();
        // Consistent, but a filtered export never claims to be intact.
        assert!(report.is_consistent() && !report.is_intact(), "{report}");
        assert_eq!(report.mode, audit::VerifyMode::FilteredExport);
        assert_eq!(report.events, 1);
        let csv = export(&app, AuditFilter::default(), ExportFormat::Csv).await;
        assert_eq!(csv.lines().count(), 26);
        assert!(csv.starts_with("instance,seq,occurred_at"));
    }
);

both_backends!(
    query_filters_and_pages_newest_first,
    async |app: TestApp| {
        let (w, _) = writer(&app).await;
        for i in 1..=25 {
            if i == 20 {
                app.clock.advance_secs(60);
            }
            w.record(event(i)).await.unwrap();
        }
        let denied = AuditEvent::auth_failed("req-x", "/v1/customers", "expired");
        w.record(denied).await.unwrap();
        w.shutdown().await;
        let db = &app.state.db;
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = audit::query(db, &AuditFilter::default(), cursor.as_deref(), 10)
                .await
                .unwrap();
            seen.extend(page.events.iter().map(|e| e.seq));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (1..=26).rev().collect::<Vec<_>>());
        let by_customer = AuditFilter {
            customer: Some(7),
            ..AuditFilter::default()
        };
        let page = audit::query(db, &by_customer, None, 10).await.unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].event.customers, vec![7]);
        let denied = AuditFilter {
            decision: Some(audit::Decision::Deny),
            actor: Some("anonymous".into()),
            status: Some(401),
            ..AuditFilter::default()
        };
        assert_eq!(
            audit::query(db, &denied, None, 10)
                .await
                .unwrap()
                .events
                .len(),
            1
        );
        let from = app.state.clock.now_micros() - 30_000_000;
        let recent = AuditFilter {
            from: Some(from),
            action: Some(Action::CustomerRead),
            ..AuditFilter::default()
        };
        assert_eq!(
            audit::query(db, &recent, None, 100)
                .await
                .unwrap()
                .events
                .len(),
            6
        );
        assert!(
            audit::query(db, &AuditFilter::default(), Some("garbage"), 10)
                .await
                .is_err()
        );
    }
);

both_backends!(pruning_keeps_the_rest_verifiable, async |app: TestApp| {
    let signer = Signer::ephemeral().unwrap();
    let key = *signer.public_key();
    let (w, wkey) = writer(&app).await;
    for i in 1..=12 {
        w.record(event(i)).await.unwrap();
    }
    app.clock.advance_secs(10 * 86_400);
    let cutoff = app.state.clock.now_micros() - 86_400_000_000;
    for i in 13..=20 {
        w.record(event(i)).await.unwrap();
    }
    assert!(w.index_now().await);
    let now = app.state.clock.now_micros();
    let report = audit::prune(&app.state.db, &signer, cutoff, now)
        .await
        .unwrap();
    assert_eq!(report.removed, 12);
    assert_eq!(report.anchors, vec![(CHAIN.to_owned(), 12)]);
    // The customer index lost exactly the pruned events' rows.
    let linked: Vec<i64> = sqlx::query_scalar(
        "SELECT customer_id FROM audit_event_customers WHERE instance = 't' ORDER BY customer_id",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(linked, (13..=20).collect::<Vec<i64>>());
    w.record(event(21)).await.unwrap();
    w.shutdown().await;
    let keys = [key, wkey, *app.state.audit.public_key()];
    let verified = audit::verify_store(&app.state.db, &keys, &|_| {})
        .await
        .unwrap();
    assert!(verified.is_intact(), "{verified}");
    assert_eq!(verified.events, 9);
    // Without the anchoring checkpoint the missing prefix is a deletion.
    exec(
        &app,
        "DELETE FROM audit_checkpoints WHERE instance = 't' AND seq = 12",
    )
    .await;
    let verified = audit::verify_store(&app.state.db, &keys, &|_| {})
        .await
        .unwrap();
    assert_problem(&verified, ProblemKind::Deleted, 12);
});

/// The WAL's checkpoint counter (header bytes 12..16): SQLite increments it
/// each time the WAL starts over from its beginning.
fn wal_restarts(app: &TestApp) -> u32 {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(app.data_dir.path().join("custodian.audit.db-wal"))
        .unwrap()
        .read_exact(&mut header)
        .unwrap();
    u32::from_be_bytes(header[12..16].try_into().unwrap())
}

/// A checkpoint concurrent with a busy writer never copies the last frames,
/// and a WAL only starts over once every frame is copied: without the
/// writer's own finishing step the trail's WAL grew for as long as the load
/// lasted. Under writes that never pause, it must still start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_trail_wal_starts_over_under_steady_writes() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    app.state.audit.record(event(0)).await.unwrap();
    let before = wal_restarts(&app);
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let audit = app.state.audit.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while tokio::time::Instant::now() < until {
                    audit.record(event(i)).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut events = 0;
    for w in writers {
        events += w.await.unwrap();
    }
    assert!(events > 100, "{events} events");
    assert!(
        wal_restarts(&app) > before,
        "the WAL never started over during {events} events"
    );
}

both_backends!(
    a_chain_begun_in_format_v1_verifies_and_continues_in_v2,
    async |app: TestApp| {
        // Events 1..=10 as the previous release wrote them (format v1), then
        // the upgraded writer continues the same chain in v2 with a policy
        // version and a privacy block.
        let (old, key) = writer(&app).await;
        for i in 1..=10 {
            let mut e = event(i);
            e.format = audit::event::ENCODING_V1;
            old.record(e).await.unwrap();
        }
        old.shutdown().await;
        let (new, key2) = writer(&app).await;
        for i in 11..=25 {
            let e = AuditEvent::system("svc", Action::SegmentRead, "/v1/segments/query")
                .request_id(format!("req-{i}"))
                .policy_version(Some([i as u8; 32]))
                .privacy(audit::PrivacyBlock {
                    mechanism: "discrete_laplace".into(),
                    epsilon_spent_micros: 100_000,
                    k: 10,
                    suppressed_cells: 1,
                    fingerprint: [3; 32],
                    budget_remaining_micros: 9_000_000,
                })
                .allow(Reason::Policy("p".into()), 200)
                .build();
            new.record(e).await.unwrap();
        }
        new.shutdown().await;
        let keys = [key, key2];
        let report = audit::verify_store(&app.state.db, &keys, &|_| {})
            .await
            .unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!(report.events, 25, "{report}");
        let stored = rows(&app, 0, 100).await;
        assert_eq!(stored[0].event.format, 1);
        assert_eq!(stored[24].event.format, 2);
        assert_eq!(stored[24].event.policy_version, Some([25; 32]));

        // Tampering is found in either format: a v1 event's field...
        edit_block(&app, 4, |events| {
            for e in events.iter_mut().filter(|e| e.seq == 4) {
                e.event.resource = "/v1/customers/999".into();
            }
        })
        .await;
        let r = audit::verify_store(&app.state.db, &keys, &|_| {})
            .await
            .unwrap();
        assert_eq!(r.problem.as_ref().map(|p| p.seq), Some(4), "{r}");
    }
);

both_backends!(
    a_v2_privacy_block_and_policy_version_are_covered_by_the_chain,
    async |app: TestApp| {
        let (w, key) = writer(&app).await;
        for i in 1..=5 {
            let e = AuditEvent::system("svc", Action::SegmentRead, "/v1/segments/query")
                .request_id(format!("req-{i}"))
                .policy_version(Some([1; 32]))
                .privacy(audit::PrivacyBlock {
                    mechanism: "discrete_laplace".into(),
                    epsilon_spent_micros: 100_000,
                    k: 10,
                    suppressed_cells: 0,
                    fingerprint: [3; 32],
                    budget_remaining_micros: 9_000_000,
                })
                .allow(Reason::Policy("p".into()), 200)
                .build();
            w.record(e).await.unwrap();
        }
        w.shutdown().await;
        assert!(verify(&app, key).await.is_intact());
        // Someone lowers the epsilon an answer cost...
        edit_block(&app, 2, |events| {
            for e in events.iter_mut().filter(|e| e.seq == 2) {
                if let Some(p) = e.event.privacy.as_mut() {
                    p.epsilon_spent_micros = 1;
                }
            }
        })
        .await;
        let report = verify(&app, key).await;
        assert_eq!(report.problem.as_ref().map(|p| p.seq), Some(2), "{report}");
    }
);
