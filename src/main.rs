//! The `custodian` binary: everything lives in the library; see `cli`.

/// mimalloc: the request path and the audit writer allocate many small,
/// short-lived buffers across threads (request → writer task → database
/// worker thread), where glibc's allocator showed up in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let code = custodian::cli::run().await;
    std::process::exit(code);
}
